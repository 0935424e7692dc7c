"""A persona's greeting (a character card's `first_mes`): said in front of its first reply in a channel.

"First" is per platform, channel and persona and is recorded in the Store the way first contacts are
(shared by every process on a Redis store, kept as long as history), so two replies racing in one
channel greet once. The greeting is the persona author's text, not the model's: no LLM call.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import Any

from bots.core.events import Message, Reply
from bots.persona import Persona

_CHAR = re.compile(r"\{\{char\}\}|<bot>", re.IGNORECASE)
_USER = re.compile(r"\{\{user\}\}|<user>", re.IGNORECASE)

# Platform user ids are numbers or "persona:..."; a channel's record under this prefix is nobody's.
_CHANNEL = "channel:"


def fill_macros(text: str, char: str, user: str) -> str:
    """{{char}} and {{user}} (and the older <BOT>/<USER>) as character cards write them."""
    return _USER.sub(lambda _: user, _CHAR.sub(lambda _: char, text))


def addressee(audit: Any, reply: Reply) -> str:
    """The display name of the person the reply answers, when the fleet still has their message."""
    plan = audit.get(f"{reply.platform}:{reply.reply_to}") if reply.reply_to else None
    if plan is not None and isinstance(plan.event, Message) and plan.event.author.name:
        return str(plan.event.author.name)
    return "everyone"


class Greetings:
    """Which personas have greeted which channels; this process remembers the ones it has seen, so a
    persona with a greeting costs one store call per channel, not one per reply."""

    def __init__(self, remember: int = 100_000) -> None:
        self.remember = remember
        self._greeted: OrderedDict[tuple[str, str, str], None] = OrderedDict()

    async def opening(self, store: Any, persona: Persona, reply: Reply, user: str, now: float) -> str:
        """The greeting to say before this reply: the persona's greeting the first time it speaks in
        the channel, else ""."""
        if not persona.greeting or not persona.greeting.strip():
            return ""
        key = (reply.platform, reply.channel, persona.id)
        if key in self._greeted:
            self._greeted.move_to_end(key)
            return ""
        first = await store.first_contact(reply.platform, persona.id, _CHANNEL + reply.channel, now)
        self._greeted[key] = None
        while len(self._greeted) > self.remember:
            self._greeted.popitem(last=False)
        return fill_macros(persona.greeting.strip(), persona.name, user) if first else ""
