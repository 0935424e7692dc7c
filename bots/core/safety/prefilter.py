"""Which phrases of the lists could match a folded text, found in one pass, so the rest are not tried.

Most messages hit nothing, and trying hundreds of phrases at every word of them is what made a check
slow. Every part of a phrase that each match goes through (a word, or a group that is not optional)
gives a set of anchors, literal pieces of folded text one of which any match contains: "kil" for
`kill*`, and for a group the anchors of the best part of each option ("murder", "stab" for
`(murder|stab)`). One Aho-Corasick pass finds the anchors that occur; a phrase is tried only when
each of its parts has one (parts with pieces under three letters, "a", "i", "se", are left out:
they are in nearly every text), and is then matched by its own full regex. The answer never
changes: a part with no anchor in the text proves the phrase cannot match it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import ahocorasick

from bots.core.safety.normalize import fold
from bots.core.safety.phrases import parts, phrase_regex, split_options

Anchors = frozenset[str]
# Pieces too common in chat to pick as the one that decides whether a phrase is looked at.
COMMON = frozenset(
    "you your this that with what have all one out about just like get got was are the and but for not can "
    "will now how who why when then they them there here its want dont know some any been more very really "
    "les des une est pas que qui dans pour avec mais suis moi mon mes cette cest jai plus tres sur aux".split()
)


# A phrase to try when every part in mask (bits of part numbers) has a piece in the text.
Entry = tuple[int, str, re.Pattern[str]]


def best_part(phrase: str) -> Anchors | None:
    """The anchors of the part of phrase least likely to occur in ordinary chat, or None if no part
    is mandatory (all optional or gaps)."""
    found = required_parts(phrase)
    return max(found, key=_rarity) if found else None


def required_parts(phrase: str) -> list[Anchors]:
    """For each part every match of phrase goes through, the pieces one of which that match holds."""
    out: list[Anchors] = []
    for raw in parts(phrase):
        if raw in ("_", "~") or raw.endswith(")?"):
            continue
        if raw.startswith("("):
            options = [best_part(o) for o in split_options(raw)]
            if options and all(o is not None for o in options):
                out.append(frozenset().union(*(o for o in options if o is not None)))
        elif word := fold(raw.rstrip("*")):
            out.append(frozenset({word}))
    return out


def _rarity(anchors: Anchors) -> tuple[bool, int, int]:
    return (anchors.isdisjoint(COMMON), min(map(len, anchors)), -len(anchors))


class Prefilter:
    def __init__(self, lists: Mapping[str, list[str]]) -> None:
        numbers: dict[Anchors, int] = {}
        # anchor -> the phrases whose rarest part it is one piece of; phrases with no part: always.
        by_anchor: dict[str, list[Entry]] = {}
        self._always: list[tuple[str, re.Pattern[str]]] = []
        for section, phrases in lists.items():
            for phrase in phrases:
                pattern = re.compile(phrase_regex(phrase))
                found = required_parts(phrase)
                if not found:
                    self._always.append((section, pattern))
                    continue
                best = max(found, key=_rarity)
                # Pieces under three letters ("a", "se") are in nearly every text: not worth looking for.
                indexed = [best, *(p for p in found if p is not best and min(map(len, p)) >= 3)]
                mask = 0
                for part in indexed:
                    mask |= 1 << numbers.setdefault(part, len(numbers))
                for anchor in best:
                    by_anchor.setdefault(anchor, []).append((mask, section, pattern))
        bits: dict[str, int] = {}
        for part, number in numbers.items():
            for anchor in part:
                bits[anchor] = bits.get(anchor, 0) | 1 << number
        self._automaton = ahocorasick.Automaton()
        for anchor, mask in bits.items():
            self._automaton.add_word(anchor, (mask, tuple(by_anchor.get(anchor, ()))))
        self._empty = not bits
        if bits:
            self._automaton.make_automaton()

    def candidates(self, folded: str) -> dict[str, set[re.Pattern[str]]]:
        """section -> the phrases that could match folded: those whose every indexed part has a
        piece in it, and those with no part at all."""
        out: dict[str, set[re.Pattern[str]]] = {}
        for section, pattern in self._always:
            out.setdefault(section, set()).add(pattern)
        if self._empty:
            return out
        present = 0
        reached: list[tuple[Entry, ...]] = []
        for _, (mask, entries) in self._automaton.iter(folded):
            present |= mask
            if entries:
                reached.append(entries)
        for entries in reached:
            for mask, section, pattern in entries:
                if mask & present == mask:
                    out.setdefault(section, set()).add(pattern)
        return out
