"""The phrase syntax of the word lists (data/<lang>.txt): parsing a list file, and turning a phrase
into the regex that matches it in folded text.

A list file has `[section]` headers and one phrase a line. A phrase is folded like the text it is
matched against (normalize.fold), so it is written plainly: "kill myself", "m'ouvrir les veines".
Inside a phrase, `word*` matches any ending, `(a|b c)` either option (an option may hold groups of
its own: `(a|b (c|d))`), `(a|b)?` either or nothing, `_` any one word or none, and `~` up to four
words. Phrases match whole words only.
"""

from __future__ import annotations

import re

from bots.core.safety.normalize import fold


def parts(phrase: str) -> list[str]:
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
    return "(?:" + "|".join(_sequence(o) for o in split_options(raw)) + ")"


def _sequence(phrase: str) -> str:
    pieces = parts(phrase)
    out = ""
    for i, raw in enumerate(pieces):
        last = i == len(pieces) - 1
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


def alternation(phrases: list[str]) -> re.Pattern[str]:
    # The word-start test is made once, outside the alternation: the engine then tries the phrases
    # only where a word starts.
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


def split_options(raw: str) -> list[str]:
    inner = raw[1 : raw.rindex(")")]
    options, depth, start = [], 0, 0
    for i, c in enumerate(inner):
        depth += {"(": 1, ")": -1}.get(c, 0)
        if c == "|" and depth == 0:
            options.append(inner[start:i])
            start = i + 1
    options.append(inner[start:])
    return [o for o in options if o.strip()]
