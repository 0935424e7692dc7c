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
