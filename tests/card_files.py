"""Character card files for the card tests, written by hand from the published V2 and V3
specifications (not by our exporter), so the importer is checked against the format itself."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from pathlib import Path
from typing import Any

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def chunk(kind: bytes, data: bytes, crc: int | None = None) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF if crc is None else crc
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def ihdr(width: int = 2, height: int = 2) -> bytes:
    return chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))


def idat(width: int = 2, height: int = 2) -> bytes:
    return chunk(b"IDAT", zlib.compress((b"\0" + b"\x10\x20\x30" * width) * height))


def text(keyword: str, payload: bytes) -> bytes:
    return chunk(b"tEXt", keyword.encode("latin-1") + b"\0" + payload)


def b64(card: dict[str, Any]) -> bytes:
    return base64.b64encode(json.dumps(card).encode("utf-8"))


def png(*middle: bytes, header: bytes | None = None) -> bytes:
    """A small valid image with middle's chunks between its pixels and IEND."""
    return SIGNATURE + (header or ihdr()) + idat() + b"".join(middle) + chunk(b"IEND", b"")


def write(path: Path, data: bytes | dict[str, Any]) -> Path:
    path.write_bytes(data if isinstance(data, bytes) else json.dumps(data).encode("utf-8"))
    return path


MES_EXAMPLE = (
    "<START>\n"
    "{{user}}: Who goes there?\n"
    "{{char}}: *lowers her lantern* Just a keeper of the old light, {{user}}.\n"
    "She smiles.\n"
    "<START>\n"
    "{{user}}: Tell me about the tower.\n"
    "It has been dark for years.\n"
    "{{char}}: It was built before the harbour. I am {{char}} and I keep it lit.\n"
)

BOOK = {
    "name": "Harbour lore",
    "description": "",
    "scan_depth": 4,
    "token_budget": 256,
    "recursive_scanning": False,
    "extensions": {},
    "entries": [
        {
            "keys": ["tower"],
            "content": "The tower is 40 m tall.",
            "extensions": {},
            "enabled": True,
            "insertion_order": 0,
            "case_sensitive": False,
            "name": "tower",
            "priority": 1,
            "id": 1,
            "comment": "",
            "selective": False,
            "secondary_keys": [],
            "constant": False,
            "position": "before_char",
        },
        {
            "keys": ["harbour"],
            "content": "Ships come at dawn.",
            "extensions": {},
            "enabled": True,
            "insertion_order": 1,
        },
    ],
}


def v2_data(**override: Any) -> dict[str, Any]:
    """Every field of the V2 spec's `data`, each one used."""
    data: dict[str, Any] = {
        "name": "Mira",
        "description": "{{char}} is the lighthouse keeper of Saltmarsh. She talks to {{user}} kindly.",
        "personality": "patient, dry humour, protective",
        "scenario": "{{user}} climbs the lighthouse stairs on a stormy night.",
        "first_mes": "*The door creaks.* Oh! A visitor. Come in out of the rain, {{user}}. I'm {{char}}.",
        "mes_example": MES_EXAMPLE,
        "creator_notes": "Works best with slow, atmospheric chats.",
        "system_prompt": "Write as {{char}} in third person. {{original}}",
        "post_history_instructions": "Stay in character as {{char}}.",
        "alternate_greetings": ["Hello again, {{user}}.", "*Mira waves.*"],
        "character_book": BOOK,
        "tags": ["fantasy", "wholesome"],
        "creator": "saltmarsh_writer",
        "character_version": "1.2",
        "extensions": {"depth_prompt": {"prompt": "Mira is tired.", "depth": 4}, "fav": True},
    }
    data.update(override)
    return data


def v2_card(**override: Any) -> dict[str, Any]:
    return {"spec": "chara_card_v2", "spec_version": "2.0", "data": v2_data(**override)}


def v3_card(**override: Any) -> dict[str, Any]:
    """Every field of the V3 spec's `data`: the V2 ones plus the V3 additions."""
    data = v2_data()
    data.update(
        {
            "nickname": "Mimi",
            "creator_notes_multilingual": {"en": "Slow chats.", "fr": "Conversations lentes."},
            "source": ["https://example.org/cards/mira"],
            "group_only_greetings": ["*Mira nods at everyone.*"],
            "creation_date": 1700000000,
            "modification_date": 1700000500,
            "assets": [
                {"type": "icon", "uri": "ccdefault:", "name": "main", "ext": "png"},
                {"type": "background", "uri": "https://example.org/bg.png", "name": "storm", "ext": "png"},
            ],
        }
    )
    data.update(override)
    return {"spec": "chara_card_v3", "spec_version": "3.0", "data": data}
