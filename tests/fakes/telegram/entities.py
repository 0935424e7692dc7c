"""Message entities: UTF-16 offsets, and the commands and mentions Telegram's server detects itself."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from tests.fakes.telegram.models import JSONDict


def utf16_len(text: str) -> int:
    """Entity offsets and the 4096 limit count UTF-16 code units, so emoji count twice."""
    return len(text.encode("utf-16-le")) // 2


_COMMAND_RE = re.compile(r"(?<![\w/@<>])/([A-Za-z0-9_]{1,64})(?:@([A-Za-z0-9_]{3,32}))?(?![\w/@<>])")
_MENTION_RE = re.compile(r"(?<![\w@])@([A-Za-z0-9_]{3,32})(?![\w@])")
# Auto-detection skips text already covered by these: Telegram finds no mentions inside code.
_OPAQUE_ENTITIES = frozenset({"code", "pre", "text_link", "text_mention", "mention", "bot_command", "url", "email"})


def auto_entities(text: str, existing: Iterable[JSONDict] = ()) -> list[JSONDict]:
    """``bot_command`` and ``mention`` entities as Telegram's server would add them."""
    taken = [(e["offset"], e["offset"] + e["length"]) for e in existing if e.get("type") in _OPAQUE_ENTITIES]
    found: list[JSONDict] = []
    for kind, pattern in (("bot_command", _COMMAND_RE), ("mention", _MENTION_RE)):
        for match in pattern.finditer(text):
            start = utf16_len(text[: match.start()])
            end = start + utf16_len(match.group(0))
            if any(start < t_end and t_start < end for t_start, t_end in taken):
                continue
            taken.append((start, end))
            found.append({"type": kind, "offset": start, "length": end - start})
    return found


def sort_entities(entities: Iterable[JSONDict]) -> list[JSONDict]:
    return sorted(entities, key=lambda e: (e["offset"], -e["length"]))


def entity_text(text: str, entity: Mapping[str, Any]) -> str:
    raw = text.encode("utf-16-le")
    start, length = 2 * int(entity["offset"]), 2 * int(entity["length"])
    return raw[start : start + length].decode("utf-16-le")
