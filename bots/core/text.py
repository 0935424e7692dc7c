"""Making model output safe to post: no mass or targeted pings, and splitting at platform limits."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import replace

from bots.core.events import Event, Message

ZWSP = "\u200b"

# Discord's raw mention syntax for users, nicknames, roles and channels-as-pings.
_DISCORD_MENTION = re.compile(r"<@[!&]?\d+>")
_EVERYONE = re.compile(r"@(everyone|here)\b", re.IGNORECASE)
# Any other @handle would notify a Telegram user or a Discord user named in plain text by a client.
_HANDLE = re.compile(r"@(?=[A-Za-z0-9_])")
_SPEAKER_PREFIX = re.compile(r"^\s*\[?([^\]\n:]{1,40})\]?:\s+")


# Control characters other than newline and tab: terminal escapes, carriage returns that overwrite a
# line, NUL. No chat needs them and the console would interpret them.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# Letters that render as nothing (Hangul fillers, the braille blank): not format characters by category,
# but a reply made of them is as empty as one made of zero-width spaces.
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800\u180e")
# Unicode categories that never show a glyph on their own: controls, format characters (zero-width
# space and joiners, bidi marks, BOM, tags), separators and combining marks with no base. Unassigned and
# private-use code points are left visible: a newer emoji or a font's icon may well show.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zs", "Zl", "Zp", "Mn", "Me"})


def is_invisible(text: str) -> bool:
    """True when nothing in text would show: only whitespace, zero-width and other blank characters."""
    return all(ch in _BLANK_LETTERS or unicodedata.category(ch) in _INVISIBLE_CATEGORIES for ch in text)


def sanitize(text: str, persona_name: str = "") -> str:
    """Defuse every way the model's words could ping someone; drop a leading "Name:" echo.

    A reply with nothing visible in it becomes "" so it is never posted as a blank message.
    """
    text = _CONTROL.sub("", text.replace("\r\n", "\n")).strip()
    if persona_name:
        m = _SPEAKER_PREFIX.match(text)
        if m and m.group(1).strip().lower() in {persona_name.lower(), persona_name.lower().removeprefix("the ")}:
            text = text[m.end() :]
    if is_invisible(text):
        return ""
    text = _DISCORD_MENTION.sub(lambda m: "@role" if "&" in m.group(0) else "@someone", text)
    text = _EVERYONE.sub(lambda m: f"@{ZWSP}{m.group(1)}", text)
    text = _HANDLE.sub(f"@{ZWSP}", text)
    return text


_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")


def split_text(text: str, limit: int) -> list[str]:
    """Split text into chunks of at most `limit` characters on paragraph, then sentence, then word bounds."""
    text = text.strip()
    if len(text) <= limit:
        return [text] if text else []
    chunks: list[str] = []
    current = ""
    for piece in _pieces(text, limit):
        sep = "" if not current else ("\n\n" if piece.startswith("\n\n") else " ")
        piece = piece.lstrip("\n")
        if current and len(current) + len(sep) + len(piece) > limit:
            chunks.append(current)
            current = piece
        else:
            current = f"{current}{sep}{piece}" if current else piece
    if current:
        chunks.append(current)
    return chunks


def _pieces(text: str, limit: int) -> list[str]:
    """Atoms no longer than limit: paragraphs, else sentences, else words, else hard cuts."""
    out: list[str] = []
    for n, para in enumerate(re.split(r"\n\s*\n", text)):
        para = para.strip()
        if not para:
            continue
        marker = "\n\n" if n and out else ""
        if len(para) <= limit:
            out.append(marker + para)
            continue
        first = True
        for sentence in _SENTENCE_END.split(para):
            for atom in _fit(sentence, limit):
                out.append((marker if first else "") + atom)
                first = False
    return out


def _fit(sentence: str, limit: int) -> list[str]:
    if len(sentence) <= limit:
        return [sentence]
    out: list[str] = []
    current = ""
    for word in sentence.split(" "):
        while len(word) > limit:
            if current:
                out.append(current)
                current = ""
            out.append(word[:limit])
            word = word[limit:]
        if current and len(current) + 1 + len(word) > limit:
            out.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        out.append(current)
    return out


_AT = re.compile(r"@([A-Za-z0-9_-]+)")


def at_names(text: str) -> list[str]:
    """The @names typed in text, lowercased (console and simulate mentions)."""
    return [m.lower() for m in _AT.findall(text)]


def valid_unicode(text: str) -> str:
    """text as valid Unicode: lone surrogates (undecodable input bytes kept by surrogateescape, or
    a broken \\ud83d escape in a JSON payload) become U+FFFD, so no later encode can fail on them."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # Through UTF-16, surrogate pairs that arrived as two code units join into their character.
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text


def with_valid_text(event: Event) -> Event:
    """The event with valid Unicode in everything the fleet stores or puts in a prompt."""
    author = event.author
    name = valid_unicode(author.name)
    if name != author.name:
        event = replace(event, author=replace(author, name=name))
    if isinstance(event, Message):
        text = valid_unicode(event.text)
        return event if text == event.text else replace(event, text=text)
    args = valid_unicode(event.args)
    return event if args == event.args else replace(event, args=args)
