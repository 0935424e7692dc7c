"""The local moderator as it was before it was made fast (commit 3ba9cbc), frozen as the reference
the fast one must agree with (tests/test_safety_equivalence.py): the same fold, and the same lists
compiled into one alternation per section and searched in full for every text. Not used by the fleet.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources

_APOSTROPHES = re.compile(r"['’`´ʼ]")
# French elision (l'eau, j'ai, qu'il): the article is a word of its own, or "d'abruti" would hide
# "abruti". English contractions (I'm, don't) are not elisions: they fold to one word (im, dont).
_ELISION = re.compile(r"\b(qu|[cdjlmnst])['’`´ʼ](?=[a-z])")
_TOKEN = re.compile(r"\S+")
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "@": "a", "$": "s"})
_HAS_LETTER = re.compile(r"[a-z]")
_LEETISH = re.compile(r"[0134578@$]")
_INNER = re.compile(r"(?<=[a-z0-9])[.\-_*·•](?=[a-z0-9])")
_NON_WORD = re.compile(r"[^a-z0-9]+")
_SPACED = re.compile(r"\b(?:[a-z] ){2,}[a-z]\b")
_REPEATS = re.compile(r"([a-z])\1+")
# "j" standing for "je" (j'veux, j'me) or run into the verb in texting (jveux, jsuis, jme); "j'ai"
# folds to "je ai" too, like the patterns, which go through the same folding.
_JE = re.compile(r"\bj(?: |(?=(?:veux|vais|vai|suis|sui|peux|pense|sais|me|te|men|compte|voudrais|arrive|ai)\b))")
_CHUI = re.compile(r"\b(?:chui|chuis|jsui|jsuis|chu)\b")
# Words whose loss would blind whole sections; a token one edit away (a letter dropped, added,
# changed, or two swapped) is read as the word. A token that is a prefix of one ("suicid", as in the
# pattern "suicid*") or extends one ("suicides") is left as it is.
_KEYWORDS = ("suicide", "suicidal", "suicider", "suicidaire", "myself")
_FUZZY_TOKEN = re.compile(r"\b(?:s[a-z]{4,9}|m[a-z]{4,6}|[a-z]y[a-z]{3,5})\b")


def _strip_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _unleet(token: str) -> str:
    if _LEETISH.search(token) and _HAS_LETTER.search(token):
        return token.translate(_LEET)
    return token


def _one_edit(a: str, b: str) -> bool:
    """a and b differ by one insertion, deletion, substitution or swap of neighbours."""
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 or (
            len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]]
        )
    short, long = (a, b) if len(a) < len(b) else (b, a)
    i = 0
    while i < len(short) and short[i] == long[i]:
        i += 1
    return short[i:] == long[i + 1 :]


def _keyword(match: re.Match[str]) -> str:
    token = match.group(0)
    for word in _KEYWORDS:
        if token.startswith(word) or word.startswith(token):
            return token
    for word in _KEYWORDS:
        if _one_edit(token, word):
            return word
    return token


def fold(text: str) -> str:
    """The folded form of text (see the module docstring); a pure function of its input."""
    text = _strip_accents(text).casefold()
    text = _ELISION.sub(r"\1 ", text)
    text = _APOSTROPHES.sub("", text)
    text = _TOKEN.sub(lambda m: _unleet(m.group(0)), text)
    text = _INNER.sub("", text)
    text = _NON_WORD.sub(" ", text).strip()
    text = _SPACED.sub(lambda m: m.group(0).replace(" ", ""), text)
    text = _REPEATS.sub(r"\1", text)
    text = _CHUI.sub("je suis", text)
    text = _JE.sub("je ", text)
    return _FUZZY_TOKEN.sub(_keyword, text)


LANGS = ("en", "fr")
ALLOW = "allow"


def _parts(phrase: str) -> list[str]:
    """phrase split into words and (groups), a group ending at its matching parenthesis."""
    parts: list[str] = []
    i = 0
    while i < len(phrase):
        if phrase[i].isspace():
            i += 1
        elif phrase[i] == "(":
            depth, j = 0, i
            while j < len(phrase):
                depth += {"(": 1, ")": -1}.get(phrase[j], 0)
                if depth == 0:
                    break
                j += 1
            if depth:
                raise ValueError(f"unbalanced parentheses in {phrase!r}")
            j += 1 + (phrase[j + 1 : j + 2] == "?")
            parts.append(phrase[i:j])
            i = j
        else:
            j = i
            while j < len(phrase) and not phrase[j].isspace() and phrase[j] != "(":
                j += 1
            if phrase[i:j].endswith(")") or phrase[i:j].endswith(")?"):
                raise ValueError(f"unbalanced parentheses in {phrase!r}")
            parts.append(phrase[i:j])
            i = j
    return parts


def _word(raw: str) -> str:
    if "?" in raw:
        # Folding would drop it silently: "morte?" would only ever match "morte".
        raise ValueError(f"'?' only follows a (group), not a word: {raw!r}")
    star = raw.endswith("*")
    word = fold(raw.rstrip("*"))
    return re.escape(word) + ("[a-z0-9]*" if star else "")


def _options(raw: str) -> str:
    inner = raw[1 : raw.rindex(")")]
    options, depth, start = [], 0, 0
    for i, c in enumerate(inner):
        depth += {"(": 1, ")": -1}.get(c, 0)
        if c == "|" and depth == 0:
            options.append(inner[start:i])
            start = i + 1
    options.append(inner[start:])
    return "(?:" + "|".join(_sequence(o) for o in options if o.strip()) + ")"


def _sequence(phrase: str) -> str:
    parts = _parts(phrase)
    out = ""
    for i, raw in enumerate(parts):
        last = i == len(parts) - 1
        # An optional word carries its own trailing space, and starts a word: the space before it
        # is optional like any, so "i ~ to die" must not read "is going to die" as "i" + "s going".
        if raw == "_":
            out += "(?<![a-z0-9])(?:[a-z0-9]+ )?"
        elif raw == "~":
            out += "(?<![a-z0-9])(?:[a-z0-9]+ ){0,4}"
        elif raw.startswith("(") and raw.endswith(")?"):
            out += "(?:" + _options(raw) + " ?)?"
        else:
            piece = _options(raw) if raw.startswith("(") else _word(raw)
            # " ?": words run together ("k i l l m y s e l f" folds to "kilmyself") still match.
            out += piece if last else piece + " ?"
    return out


_START, _END = r"(?<![a-z0-9])", r"(?![a-z0-9])"


def phrase_regex(phrase: str) -> str:
    return _START + _sequence(phrase) + _END


def _alternation(phrases: list[str]) -> re.Pattern[str]:
    # The word-start test is made once, outside the alternation: the engine then tries the hundreds
    # of phrases only where a word starts, which keeps a check near 0.1 ms.
    return re.compile(_START + "(?:" + "|".join(_sequence(p) for p in phrases) + ")" + _END)


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
        compiled = {name: _alternation(phrases) for name, phrases in merged.items()}
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


def check(lexicon: Lexicon, text: str, names: tuple[str, ...]) -> tuple[tuple[str, ...], str]:
    """What LocalModerator.check_now answered: the sections hit and the language (none for blank text)."""
    if not text.strip():
        return (), "en"
    return lexicon.hits(lexicon.folded(text), names), language(text)
