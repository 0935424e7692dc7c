"""Reading a card file (PNG or JSON) into its JSON object, refusing anything malformed or oversized
with one line that says what is wrong."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bots.cards import CardError
from bots.cards.png import MAX_TEXT, SIGNATURE, Chunk, card_texts, check_image

MAX_FILE = 20 * 1024 * 1024  # cards with large art are a few MB; refused before a byte is read


@dataclass(frozen=True, slots=True)
class CardFile:
    data: dict[str, Any]
    # The image's chunks when the card came as a PNG (its avatar), else None.
    image: list[Chunk] | None
    chunk: str = ""  # which text chunk held the card (ccv3, chara), "" for JSON


def read_bytes(path: Path, limit: int = MAX_FILE) -> bytes:
    try:
        size = path.stat().st_size
        if size > limit:
            raise CardError(f"{size / 1024 / 1024:.1f} MB is over the {limit // (1024 * 1024)} MB limit for a card")
        with path.open("rb") as f:
            raw = f.read(limit + 1)  # the file may have grown since stat
    except OSError as exc:
        raise CardError(f"cannot read: {exc.strerror or exc}") from None
    if len(raw) > limit:
        raise CardError(f"over the {limit // (1024 * 1024)} MB limit for a card")
    return raw


def read_card(path: Path) -> CardFile:
    raw = read_bytes(path)
    if raw.startswith(SIGNATURE):
        image = check_image(raw)
        texts = card_texts(image)
        # A V3 card carries ccv3 and, for older readers, chara: the newer one wins.
        keyword = "ccv3" if "ccv3" in texts else "chara" if "chara" in texts else ""
        if not keyword:
            raise CardError("no character card in this PNG (no 'chara' or 'ccv3' text chunk)")
        text = _unbase64(texts[keyword], keyword)
        return CardFile(_json(text, f"the {keyword!r} chunk"), image, keyword)
    if raw[:1] == b"\x89" or raw[1:4] == b"PNG":
        raise CardError("not a PNG file (bad signature)")
    return CardFile(_json(raw, "the file"), None)


def _unbase64(text: bytes, keyword: str) -> bytes:
    text = b"".join(text.split())
    try:
        # Some writers drop the padding; what is left is still unambiguous.
        out = base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise CardError(f"the {keyword!r} chunk is not valid base64") from None
    if len(out) > MAX_TEXT:
        raise CardError(f"the {keyword!r} chunk decodes past {MAX_TEXT // (1024 * 1024)} MB")
    return out


def _json(raw: bytes, what: str) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CardError(f"{what} is not UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CardError(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise CardError(f"{what} is JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise CardError(f"{what} holds JSON that is not an object")
    return data
