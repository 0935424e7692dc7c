"""The Moderator port and the local moderator (shipped lists, offline, microseconds a message).

A moderator says which categories (settings.CATEGORIES) a text falls in. The OpenAI one lives in
bots/llm/moderation.py; the local one is also what the fleet falls back to when that one fails.
The checks no moderation endpoint makes (sponsor pressure, claims to be human, advice topics) are
local only: `LocalModerator.sections`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from bots.core.safety.lexicon import Lexicon, language_of_folded
from bots.core.safety.normalize import fold
from bots.core.safety.settings import CATEGORIES

ADVICE = ("medical", "legal", "financial")
# Verdicts kept per text: a person's message is checked on intake and again when the desk screens it
# or picks the language of a nudge; replies are checked once per streamed snapshot, all different.
# Only chat-sized texts are kept, so the cache stays within a few megabytes.
CACHED = 2048
CACHED_CHARS = 2000


@dataclass(frozen=True, slots=True)
class Verdict:
    categories: tuple[str, ...] = ()
    # The language the text seems to be in (en, fr), for choosing which care message to send.
    lang: str = "en"

    @property
    def flagged(self) -> bool:
        return bool(self.categories)


CLEAN = Verdict()


class Moderator(Protocol):
    name: str
    # Cheap enough to run on every streamed snapshot of a reply (no I/O); else a reply is held back
    # until it is complete and checked once.
    cheap: bool

    async def check(self, text: str) -> Verdict: ...


class LocalModerator:
    name = "local"
    cheap = True

    def __init__(self, lexicon: Lexicon | None = None) -> None:
        self.lexicon = lexicon or Lexicon.shipped()
        self._verdicts: dict[str, Verdict] = {}

    async def check(self, text: str) -> Verdict:
        return self.check_now(text)

    def check_now(self, text: str) -> Verdict:
        verdict = self._verdicts.get(text)
        if verdict is None:
            verdict = self._verdict(text)
            if len(text) <= CACHED_CHARS:
                if len(self._verdicts) >= CACHED:
                    del self._verdicts[next(iter(self._verdicts))]
                self._verdicts[text] = verdict
        return verdict

    def _verdict(self, text: str) -> Verdict:
        if not text.strip():
            return CLEAN
        folded = fold(moderated_part(text))
        return Verdict(self.lexicon.hits_unblanked(folded, CATEGORIES), language_of_folded(folded))

    def sections(self, text: str, names: tuple[str, ...]) -> tuple[str, ...]:
        """Which of the local-only lists (pressure, human_claim, medical, legal, financial) text hits."""
        return self.lexicon.hits_unblanked(fold(moderated_part(text)), names) if text.strip() else ()


class NoModerator:
    """safety.moderation: off. Care mode then has nothing to go on: `check` warns."""

    name = "off"
    cheap = True

    async def check(self, text: str) -> Verdict:
        return CLEAN


# The most of one text a moderator reads. Chat platforms cap a message at about 4,000 characters and a
# prompt carries llm.history_chars of history, so nothing past this is shown to a model or likely read
# by a person; a hostile 1 MB message must not hold the event loop for the time the lists take on it.
MODERATED_HEAD = 12_000
MODERATED_TAIL = 4_000


def moderated_part(text: str) -> str:
    """The start and the end of a very long text: where a person would put what they mean."""
    if len(text) <= MODERATED_HEAD + MODERATED_TAIL:
        return text
    return text[:MODERATED_HEAD] + "\n" + text[-MODERATED_TAIL:]
