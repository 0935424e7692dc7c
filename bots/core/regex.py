"""Persona regexes on RE2, a linear-time engine: no pattern can make a message take exponential time.

Python's `re` backtracks, so a trigger such as `(a+)+$` and a message of 36 `a`s and a `!` froze
the whole fleet for minutes. RE2 guarantees time linear in the text, at the price of the features
that need backtracking (backreferences, lookarounds, possessive and atomic groups); `check` names
the construct when a persona uses one. Every regex runs on UTF-8 bytes so a message is encoded once,
however many regexes look at it.
"""

from __future__ import annotations

import re

import re2

# RE2's own wording is terse ("invalid perl operator: (?="); these say what the construct is.
_CONSTRUCTS = (
    (re.compile(r"invalid escape sequence: \\[1-9]"), "backreferences (\\1...) are not supported"),
    (re.compile(r"\(\?<?="), "lookarounds ((?=...), (?<=...)) are not supported"),
    (re.compile(r"\(\?<?!"), "negative lookarounds ((?!...), (?<!...)) are not supported"),
    (re.compile(r"\(\?>"), "atomic groups ((?>...)) are not supported"),
    (re.compile(r"\(\?\("), "conditionals ((?(1)...)) are not supported"),
    (re.compile(r"\(\?#"), "inline comments ((?#...)) are not supported"),
    (re.compile(r"\(\?[a-zA-Z]*x"), "the verbose flag (?x) is not supported"),
    (re.compile(r"bad repetition operator: [*+?}]\+"), "possessive quantifiers (*+, ++, ?+) are not supported"),
    (re.compile(r"invalid escape sequence: \\Z"), "\\Z is not supported; use \\z for the end of the text"),
    (re.compile(r"invalid repetition size"), "a repetition count above 1000 is not supported"),
    (re.compile(r"pattern too large"), "the pattern is too large"),
)


class RegexError(ValueError):
    """A pattern RE2 cannot run; the message names the construct."""


def _options() -> re2.Options:
    options = re2.Options()
    # Errors come back as exceptions with the same text; RE2 would also print them to stderr.
    options.log_errors = False
    # Triggers only ask whether a pattern matches: no groups to track makes matching cheaper.
    options.never_capture = True
    return options


_OPTIONS = _options()


def explain(detail: str) -> str:
    for pattern, meaning in _CONSTRUCTS:
        if pattern.search(detail):
            return f"{meaning} (the linear-time RE2 engine runs persona regexes; RE2 says: {detail})"
    return f"RE2 cannot compile it: {detail}"


class Regex:
    """A compiled pattern; `search` takes the message already encoded as UTF-8."""

    __slots__ = ("_compiled", "pattern")

    def __init__(self, pattern: str):
        self.pattern = pattern
        try:
            self._compiled = re2.compile(pattern.encode("utf-8", "surrogatepass"), _OPTIONS)
        except re2.error as exc:
            detail = exc.args[0] if exc.args else str(exc)
            if isinstance(detail, bytes):
                detail = detail.decode("utf-8", "replace")
            raise RegexError(explain(str(detail))) from None

    def search(self, encoded: bytes) -> bool:
        return self._compiled.search(encoded) is not None


def encode(text: str) -> bytes:
    # A lone surrogate (possible in text from a platform's JSON) must not make matching raise.
    return text.encode("utf-8", "replace")
