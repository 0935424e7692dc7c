"""A persona's greeting (a character card's `first_mes`): said in front of its first reply in a channel.

"First" is per platform, channel and persona and is recorded in the Store the way first contacts are
(shared by every process on a Redis store, kept as long as history), so two replies racing in one
channel greet once. The greeting is the persona author's text, not the model's: no LLM call.
"""

from __future__ import annotations

import re
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


async def opening(store: Any, persona: Persona, reply: Reply, user: str, now: float) -> str:
    """The greeting to say before this reply: the persona's greeting the first time it speaks in the
    channel, else ""."""
    if not persona.greeting or not persona.greeting.strip():
        return ""
    if not await store.first_contact(reply.platform, persona.id, _CHANNEL + reply.channel, now):
        return ""
    return fill_macros(persona.greeting.strip(), persona.name, user)
