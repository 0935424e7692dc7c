"""The guard every persona reply passes before anything of it is shown.

Streaming replies are shown as they are written, so the guard checks each snapshot before the
adapter sees it: with the local lists that costs microseconds, and a snapshot that fails is never
shown. What was shown before passed the same checks; the adapter is told the reply stopped with
nothing worth keeping (IncompleteReply("")), so Discord and Telegram delete the streamed message and
the console prints nothing. A moderator that needs the network (OpenAI) cannot run on every snapshot: the reply is
then held back until complete, checked once, and shown whole, or not at all.

Checks: the moderator's categories (those not set to `log`), claims to be human, and for
sponsored personas urgency and scarcity phrases. The not-professional-advice line joins the final
text when the persona presents as a professional or the reply is about medicine, law or money.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bots.core.events import Reply
from bots.core.safety.lexicon import language
from bots.core.safety.moderator import ADVICE, Verdict
from bots.core.safety.rules import CARE_INSTRUCTION, professional
from bots.persona import Persona

if TYPE_CHECKING:
    from bots.core.safety.desk import SafetyDesk


# Characters of a streamed snapshot's end that are checked; longer than any phrase of the lists.
WINDOW = 300


class ReplyGuard:
    def __init__(self, desk: SafetyDesk, persona: Persona, reply: Reply) -> None:
        self.desk = desk
        self.persona = persona
        self.reply = reply
        # Hold every snapshot back until the reply is complete (a moderator with I/O).
        self.hold = not desk.moderator.cheap
        # The category that stopped the reply ("" while none has).
        self.flagged = ""
        self._local_only = ("human_claim", "pressure") if persona.sponsor else ("human_claim",)
        # A reply in care mode is asked to talk about crisis lines and may echo the person's words;
        # the lists cannot tell that from encouragement, and silence there would help nobody.
        self._exempt = ("self_harm",) if CARE_INSTRUCTION in reply.instruction else ()

    def check(self, text: str, *, partial: bool = False) -> bool:
        """True (and `flagged` set) when text must not be shown. Local checks only: no I/O.

        A partial text (a streamed snapshot) is checked up to its last whole word: "I am real" must
        not stop a reply on its way to "I am really glad"."""
        if partial:
            text = text[: max(text.rfind(" "), text.rfind("\n"), 0)]
            # The snapshot before passed: a new match ends in the new words, so the tail is enough
            # (from a word start, so "skill myself" cannot become "kill myself").
            if len(text) > WINDOW:
                tail = text[-WINDOW:]
                text = tail[tail.find(" ") + 1 :]
        local = self.desk.local
        hits = local.sections(text, self._local_only)
        if not hits and self.desk.moderator is local:
            hits = self._blocking(local.check_now(text), count=not partial)
        if hits:
            self.flagged = hits[0]
        return bool(hits)

    async def final(self, text: str) -> bool:
        """The complete reply's last check: the local ones, then a moderator with I/O if there is one."""
        if self.check(text):
            return True
        if not self.hold:
            return False
        hits = self._blocking(await self.desk.check(text), count=True)
        if hits:
            self.flagged = hits[0]
        return bool(hits)

    def _blocking(self, verdict: Verdict, *, count: bool) -> tuple[str, ...]:
        """The categories that stop a reply; those set to `log` are only counted (once, on the whole
        reply, not on every snapshot)."""
        cfg = self.desk.config
        blocking = tuple(c for c in verdict.categories if cfg.action(c) != "log" and c not in self._exempt)
        if count and not blocking:
            for c in verdict.categories:
                self.desk.emit(f"flagged:{c}")
        return blocking

    def footer(self, text: str, footer: str) -> str:
        """footer with the not-professional-advice line in front when the reply needs it."""
        if not (professional(self.persona) or self.desk.local.sections(text, ADVICE)):
            return footer
        lines = self.desk.config.advice_line
        line = lines.get(language(text)) or lines.get("en", "")
        if not line:
            return footer
        self.desk.emit("advice")
        return f"{line}\n{footer}" if footer else line
