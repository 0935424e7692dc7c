"""Text as the word lists see it: folded so that common ways around a word list still hit.

Accents are dropped, case folded, French elisions split off (d'abruti: d abruti), leetspeak letters
restored inside words (k1ll, $uicide), dots, dashes and stars inside a word removed (sui-cide,
s.u.i.c.i.d.e), spaced-out letters joined (k i l l), repeated letters collapsed (diiiie), everything
else turned into single spaces. The patterns of the lists go through the same folding, so they are
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


def _strip_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _unleet(token: str) -> str:
    if _LEETISH.search(token) and _HAS_LETTER.search(token):
        return token.translate(_LEET)
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
    return _REPEATS.sub(r"\1", text)
