"""The shipped word and pattern lists (data/<lang>.txt), compiled once into one regex per section.

A list file has `[section]` headers and one phrase a line. A phrase is folded like the text it is
matched against (normalize.fold), so it is written plainly: "kill myself", "m'ouvrir les veines".
Inside a phrase, `word*` matches any ending, `(a|b c)` either option, `(a|b)?` either or nothing,
`_` any one word or none, and `~` up to four words.
Phrases match whole words only. The `allow` section lists benign look-alikes that are blanked out
before anything else is matched ("suicide squad").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources

from bots.core.safety.normalize import fold

LANGS = ("en", "fr")
ALLOW = "allow"


_PARTS = re.compile(r"\([^)]*\)\??|\S+")


def _word(raw: str) -> str:
    star = raw.endswith("*")
    word = fold(raw.rstrip("*"))
    return re.escape(word) + ("[a-z0-9]*" if star else "")


def _options(raw: str) -> str:
    inner = raw.rstrip("?")[1:-1]
    return "(?:" + "|".join(" ".join(_word(w) for w in o.split()) for o in inner.split("|") if o.strip()) + ")"


def phrase_regex(phrase: str) -> str:
    parts = _PARTS.findall(phrase)
    out = ""
    for i, raw in enumerate(parts):
        last = i == len(parts) - 1
        if raw == "_":
            # An optional word carries its own trailing space.
            out += "(?:[a-z0-9]+ )?"
        elif raw == "~":
            out += "(?:[a-z0-9]+ ){0,4}"
        elif raw.startswith("(") and raw.endswith(")?"):
            out += "(?:" + _options(raw) + " ?)?"
        else:
            piece = _options(raw) if raw.startswith("(") else _word(raw)
            # " ?": words run together ("k i l l m y s e l f" folds to "kilmyself") still match.
            out += piece if last else piece + " ?"
    return r"(?<![a-z0-9])" + out + r"(?![a-z0-9])"


def parse(text: str, source: str) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1].strip(), [])
        elif current is None:
            raise ValueError(f"{source}:{n}: a phrase before any [section]")
        else:
            current.append(line)
    return sections


@dataclass(frozen=True)
class Lexicon:
    """Compiled lists: section -> one alternation over every language's phrases."""

    sections: Mapping[str, re.Pattern[str]]
    allow: re.Pattern[str] | None

    @classmethod
    def build(cls, lists: Iterable[dict[str, list[str]]]) -> Lexicon:
        merged: dict[str, list[str]] = {}
        for sections in lists:
            for name, phrases in sections.items():
                merged.setdefault(name, []).extend(phrases)
        compiled = {name: re.compile("|".join(phrase_regex(p) for p in phrases)) for name, phrases in merged.items()}
        return cls(compiled, compiled.pop(ALLOW, None))

    @classmethod
    def shipped(cls) -> Lexicon:
        files = resources.files("bots.core.safety") / "data"
        return cls.build(parse((files / f"{lang}.txt").read_text("utf-8"), f"{lang}.txt") for lang in LANGS)

    def folded(self, text: str) -> str:
        """text folded, benign look-alikes blanked out."""
        folded = fold(text)
        if self.allow is not None:
            folded = self.allow.sub(" ", folded)
        return folded

    def hits(self, folded: str, names: Iterable[str]) -> tuple[str, ...]:
        """The sections among names with a phrase in the (already folded) text."""
        return tuple(n for n in names if (p := self.sections.get(n)) is not None and p.search(folded))


_FR = frozenset(
    "je j tu il elle nous vous ils les des une est pas que qui dans pour avec mais suis moi mon ma mes "
    "ce cette cest jai ne plus tres sur au aux du et ou vais veux suis te se j c l d n qu".split()
)
_EN = frozenset(
    "i you he she we they the is are and to of my it that this not what with for am im was be have "
    "do dont can on in".split()
)


def language(text: str) -> str:
    """en or fr, by counting common words (good enough to pick which care message to send)."""
    words = fold(text).split()
    fr = sum(w in _FR for w in words)
    en = sum(w in _EN for w in words)
    return "fr" if fr > en else "en"
