"""Text as the word lists see it: folded so that common ways around a word list still hit.

Accents are dropped, case folded, French elisions split off (d'abruti: d abruti), leetspeak letters
restored inside words (k1ll, $uicide), dots, dashes and stars inside a word removed (sui-cide,
s.u.i.c.i.d.e), spaced-out letters joined (k i l l), repeated letters collapsed (diiiie), everything
else turned into single spaces. French texting forms are spelled out (jveux, j'veux: je veux; chui:
je suis), and a few words the lists cannot do without (suicide, myself) are restored from one typo
or one masked letter (sucide, s*icide, myslef). The patterns of the lists go through the same folding, so they are
written as plain phrases.
"""

from __future__ import annotations

import re
import unicodedata

# Several patterns below open with the one character they need rather than with a lookbehind or
# \b: the engine then skips ahead to that character instead of trying every position (same matches).
_APOSTROPHES = re.compile(r"['’`´ʼ]")
# French elision (l'eau, j'ai, qu'il): the article is a word of its own, or "d'abruti" would hide
# "abruti", so the apostrophe after qu/c/d/j/l/m/n/s/t at a word start becomes a space. English
# contractions (I'm, don't) are not elisions: they fold to one word (im, dont).
_ELIDED = re.compile(r"['’`´ʼ](?:(?<=\bqu.)|(?<=\b[cdjlmnst].))(?=[a-z])")
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "@": "a", "$": "s"})
_LEET_CHAR = re.compile(r"[0134578@$]")
# A whole whitespace-separated token holding one. It may start only where a token starts: written as
# \S*[...]\S*, every position inside a long token without one was a new start scanning to its end
# (a 16 KB word took 0.8 s to fold: a message could hold the event loop).
_LEET_TOKEN = re.compile(r"(?<!\S)[^\s0134578@$]*[0134578@$]\S*")
_HAS_LETTER = re.compile(r"[a-z]")
# A dot, dash, star... between two letters or digits (s.u.i.c.i.d.e, sui-cide).
_INNER = re.compile(r"[.\-_*·•](?<=[a-z0-9][.\-_*·•])(?=[a-z0-9])")
_WORD = re.compile(r"[a-z0-9]+")
_SPACED = re.compile(r"\b(?:[a-z] ){2,}[a-z]\b")
# What every _SPACED match holds (its second and third letters), found from the space before it.
_SPACED_INSIDE = re.compile(r" [a-z] [a-z](?![a-z0-9])")
_REPEATS = re.compile(r"([a-z])\1+")
# "j" standing for "je" (j'veux, j'me) or run into the verb in texting (jveux, jsuis, jme); "j'ai"
# folds to "je ai" too, like the patterns, which go through the same folding.
_JE = re.compile(
    r"j(?<![a-z0-9]j)(?: |(?=(?:veux|vais|vai|suis|sui|peux|pense|sais|me|te|men|compte|voudrais|arrive|ai)\b))"
)
_CHUI = re.compile(r"\b(?:chui|chuis|jsui|jsuis|chu)\b")
# Words whose loss would blind whole sections; a token one edit away (a letter dropped, added,
# changed, or two swapped) is read as the word. A token that is a prefix of one ("suicid", as in the
# pattern "suicid*") or extends one ("suicides") is left as it is. Only tokens of these shapes count.
_KEYWORDS = ("suicide", "suicidal", "suicider", "suicidaire", "myself")
_FUZZY_TOKEN = re.compile(r"\b(?:s[a-z]{4,9}|m[a-z]{4,6}|[a-z]y[a-z]{3,5})\b")


# The marks of accented Latin letters once decomposed (é: e + U+0301), dropped in one regex pass; the
# block's one non-combining character (U+034F) is left out. Rarer marks are found one by one.
_LATIN_MARKS = re.compile("[" + "".join(c for c in map(chr, range(0x300, 0x370)) if unicodedata.combining(c)) + "]")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def _strip_accents(text: str) -> str:
    decomposed = _LATIN_MARKS.sub("", unicodedata.normalize("NFKD", text))
    return decomposed if decomposed.isascii() else _NON_ASCII.sub(_unmarked, decomposed)


def _unmarked(match: re.Match[str]) -> str:
    return "" if unicodedata.combining(match.group(0)) else match.group(0)


def _unleet(match: re.Match[str]) -> str:
    token = match.group(0)
    return token.translate(_LEET) if _HAS_LETTER.search(token) else token


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


def _keyword(token: str) -> str:
    for word in _KEYWORDS:
        if token.startswith(word) or word.startswith(token):
            return token
    for word in _KEYWORDS:
        if _one_edit(token, word):
            return word
    return token


def _slips() -> dict[str, str]:
    """Every token _keyword reads as a keyword, mapped to it: the words one edit away from a keyword,
    written out once, so folding looks a token up instead of comparing it with each keyword."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    near: set[str] = set()
    for word in _KEYWORDS:
        for i in range(len(word) + 1):
            near |= {word[:i] + c + word[i:] for c in letters}
            near |= {word[:i] + c + word[i + 1 :] for c in letters}
            near.add(word[:i] + word[i + 1 :])
            near.add(word[:i] + word[i + 1 : i + 2] + word[i : i + 1] + word[i + 2 :])
    return {t: _keyword(t) for t in sorted(near) if _FUZZY_TOKEN.fullmatch(t) and _keyword(t) != t}


_SLIPS = _slips()


def _joined(match: re.Match[str]) -> str:
    return match.group(0).replace(" ", "")


def _first(match: re.Match[str]) -> str:
    return match.group(1)


def fold(text: str) -> str:
    """The folded form of text (see the module docstring); a pure function of its input.

    Runs on every message a person writes, so a pass is skipped when the text cannot hold what it
    rewrites (no accent in ASCII, no elision without an apostrophe, ...): the result is the same.
    """
    if not text.isascii():
        text = _strip_accents(text)
    text = text.casefold()
    if "'" in text or "`" in text or not text.isascii():
        text = _ELIDED.sub(" ", text)
        text = _APOSTROPHES.sub("", text)
    if _LEET_CHAR.search(text):
        text = _LEET_TOKEN.sub(_unleet, text)
    text = _INNER.sub("", text)
    text = " ".join(_WORD.findall(text))
    if _SPACED_INSIDE.search(text):
        text = _SPACED.sub(_joined, text)
    text = _REPEATS.sub(_first, text)
    if "chu" in text or "jsu" in text:
        text = _CHUI.sub("je suis", text)
    if "j" in text:
        text = _JE.sub("je ", text)
    words = text.split(" ")
    if _SLIPS.keys().isdisjoint(words):
        return text
    return " ".join([_SLIPS.get(w, w) for w in words])
