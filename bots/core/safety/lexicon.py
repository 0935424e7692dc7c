"""The shipped word and pattern lists (data/<lang>.txt), compiled once, and the language guess.

The phrase syntax is in phrases.py. Phrases match whole words only. The `allow` section lists benign
look-alikes that are blanked out before anything else is matched ("suicide squad"). A check folds
the text (normalize.fold), blanks look-alikes, and asks which sections have a phrase in what is left;
the prefilter (prefilter.py) keeps that to the few phrases a text could match.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from importlib import resources
from itertools import repeat

from bots.core.safety.normalize import fold
from bots.core.safety.phrases import alternation, parse
from bots.core.safety.prefilter import Prefilter

__all__ = ["ALLOW", "LANGS", "Lexicon", "language", "language_of_folded", "parse"]

LANGS = ("en", "fr")
ALLOW = "allow"


class Lexicon:
    """Compiled lists: each section's phrases behind one prefilter (prefilter.py) that says which of
    them could match a text; a section matches exactly when one of its phrases does, which is what the
    one alternation per section it replaces answered (tests/test_safety_equivalence.py compares)."""

    def __init__(self, lists: Mapping[str, list[str]]) -> None:
        self.prefilter = Prefilter(lists)
        allow = lists.get(ALLOW)
        # Blanking needs the whole alternation: the first phrase to match at a place wins there.
        self.allow = alternation(allow) if allow else None

    @classmethod
    def build(cls, lists: Iterable[dict[str, list[str]]]) -> Lexicon:
        merged: dict[str, list[str]] = {}
        for sections in lists:
            for name, phrases in sections.items():
                merged.setdefault(name, []).extend(phrases)
        return cls(merged)

    @classmethod
    def shipped(cls) -> Lexicon:
        files = resources.files("bots.core.safety") / "data"
        return cls.build(parse((files / f"{lang}.txt").read_text("utf-8"), f"{lang}.txt") for lang in LANGS)

    def folded(self, text: str) -> str:
        """text folded, benign look-alikes blanked out."""
        return self._blank(fold(text))[0]

    def hits(self, folded: str, names: Iterable[str]) -> tuple[str, ...]:
        """The sections among names with a phrase in the (already folded and blanked) text."""
        return self._hits(folded, self.prefilter.candidates(folded), names)

    def hits_unblanked(self, folded: str, names: Iterable[str]) -> tuple[str, ...]:
        """hits() of fold()'s output before blanking: blanks it, and scans it once when nothing is."""
        blanked, candidates = self._blank(folded)
        return self._hits(blanked, candidates, names)

    def _blank(self, folded: str) -> tuple[str, dict[str, set[re.Pattern[str]]]]:
        """folded with look-alikes blanked (searched for only when one could be there), and the
        candidate phrases for what is left."""
        candidates = self.prefilter.candidates(folded)
        if self.allow is None or ALLOW not in candidates:
            return folded, candidates
        blanked = self.allow.sub(" ", folded)
        if blanked != folded:
            candidates = self.prefilter.candidates(blanked)
        return blanked, candidates

    @staticmethod
    def _hits(folded: str, candidates: Mapping[str, set[re.Pattern[str]]], names: Iterable[str]) -> tuple[str, ...]:
        return tuple(n for n in names if (found := candidates.get(n)) and any(p.search(folded) for p in found))


_FR = frozenset(
    "je j tu il elle nous vous ils les des une est pas que qui dans pour avec mais suis moi mon ma mes "
    "ce cette cest jai ne plus tres sur au aux du et ou vais veux suis te se j c l d n qu".split()
)
_EN = frozenset(
    "i you he she we they the is are and to of my it that this not what with for am im was be have "
    "do dont can on in".split()
)


# +1 a French word, -1 an English one, 0 a word on both lists: the sum says which list has more.
_LEANING = {w: (w in _FR) - (w in _EN) for w in _FR | _EN}


def language(text: str) -> str:
    """en or fr, by counting common words (good enough to pick which care message to send)."""
    return language_of_folded(fold(text))


def language_of_folded(folded: str) -> str:
    """language() of a text already folded (fold, before any blanking)."""
    return "fr" if sum(map(_LEANING.get, folded.split(), repeat(0))) > 0 else "en"
