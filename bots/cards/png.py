"""PNG at the chunk level only: find a card's text chunk, strip or add text chunks, make a flat image.

Image data (IDAT) is never decompressed, so a decompression bomb costs nothing here; the header's
dimensions are still checked so such an image is not saved as an avatar for something else to open.
Compressed text chunks (zTXt, iTXt) are inflated with a cap on their output.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from bots.cards import CardError

SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_TEXT = 8 * 1024 * 1024  # a card's JSON, lorebook included, is far smaller
MAX_CHUNKS = 100_000
MAX_SIDE = 16_384
MAX_PIXELS = 64 * 1024 * 1024
TEXT_TYPES = (b"tEXt", b"zTXt", b"iTXt")


@dataclass(frozen=True, slots=True)
class Chunk:
    kind: bytes
    data: bytes

    def encode(self) -> bytes:
        crc = zlib.crc32(self.kind + self.data) & 0xFFFFFFFF
        return struct.pack(">I", len(self.data)) + self.kind + self.data + struct.pack(">I", crc)


def chunks(raw: bytes) -> Iterator[Chunk]:
    """Every chunk from the signature to IEND, each bounds-checked before it is sliced."""
    if not raw.startswith(SIGNATURE):
        raise CardError("not a PNG file (bad signature)")
    at = len(SIGNATURE)
    for n in range(MAX_CHUNKS):
        if at + 8 > len(raw):
            raise CardError("truncated PNG: it ends before its IEND chunk")
        length, kind = struct.unpack(">I4s", raw[at : at + 8])
        if length > 0x7FFFFFFF or at + 12 + length > len(raw):
            raise CardError(f"truncated PNG: chunk {n + 1} claims {length} bytes past the end of the file")
        if not kind.isalpha():
            raise CardError(f"corrupt PNG: chunk {n + 1} has a type that is not four letters")
        data = raw[at + 8 : at + 8 + length]
        (crc,) = struct.unpack(">I", raw[at + 8 + length : at + 12 + length])
        if kind in (b"IHDR", *TEXT_TYPES) and crc != zlib.crc32(kind + data) & 0xFFFFFFFF:
            raise CardError(f"corrupt PNG: the {kind.decode()} chunk fails its checksum")
        if n == 0 and kind != b"IHDR":
            raise CardError("corrupt PNG: the first chunk is not IHDR")
        yield Chunk(kind, data)
        at += 12 + length
        if kind == b"IEND":
            return
    raise CardError(f"PNG has more than {MAX_CHUNKS} chunks")


def check_image(raw: bytes) -> list[Chunk]:
    """The chunks of a PNG fit to keep as an avatar; refuses absurd dimensions (a decompression bomb)."""
    found = list(chunks(raw))
    ihdr = found[0].data
    if len(ihdr) != 13:
        raise CardError("corrupt PNG: IHDR is not 13 bytes")
    width, height = struct.unpack(">II", ihdr[:8])
    if not width or not height or width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        raise CardError(f"PNG image is {width}x{height} pixels: refused (over {MAX_SIDE} a side or 64M pixels)")
    return found


def _inflate(data: bytes, what: str) -> bytes:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, MAX_TEXT + 1)
    except zlib.error:
        raise CardError(f"{what}: compressed text that does not inflate") from None
    if len(out) > MAX_TEXT or inflater.unconsumed_tail:
        raise CardError(f"{what}: compressed text inflates past {MAX_TEXT // (1024 * 1024)} MB (a bomb?)")
    return out


def text_of(chunk: Chunk) -> tuple[str, bytes]:
    """(keyword, text bytes) of a tEXt, zTXt or iTXt chunk."""
    keyword, sep, rest = chunk.data.partition(b"\0")
    if not sep:
        raise CardError(f"corrupt PNG: a {chunk.kind.decode()} chunk has no keyword separator")
    name = keyword.decode("latin-1")
    what = f"the {name!r} {chunk.kind.decode()} chunk"
    if chunk.kind == b"tEXt":
        return name, rest
    if chunk.kind == b"zTXt":
        if not rest or rest[0] != 0:
            raise CardError(f"{what}: unknown compression method")
        return name, _inflate(rest[1:], what)
    if len(rest) < 2:
        raise CardError(f"{what}: truncated")
    compressed, method = rest[0], rest[1]
    parts = rest[2:].split(b"\0", 2)
    if len(parts) != 3:
        raise CardError(f"{what}: truncated")
    text = parts[2]
    if compressed:
        if method != 0:
            raise CardError(f"{what}: unknown compression method")
        text = _inflate(text, what)
    return name, text


def card_texts(found: list[Chunk]) -> dict[str, bytes]:
    """The first text chunk of each card keyword (ccv3 for V3, chara for V2 and V1)."""
    out: dict[str, bytes] = {}
    for chunk in found:
        if chunk.kind in TEXT_TYPES:
            name, text = text_of(chunk)
            if name.lower() in ("chara", "ccv3"):
                out.setdefault(name.lower(), text)
    return out


def with_card(found: list[Chunk], keyword: str, payload: bytes) -> bytes:
    """The image with every card chunk removed and one tEXt chunk (keyword, payload) before IEND."""
    kept = [c for c in found if c.kind not in TEXT_TYPES or not _is_card(c)]
    card = Chunk(b"tEXt", keyword.encode("latin-1") + b"\0" + payload)
    body = [c.encode() for c in kept if c.kind != b"IEND"]
    return SIGNATURE + b"".join(body) + card.encode() + Chunk(b"IEND", b"").encode()


def without_card(found: list[Chunk]) -> bytes:
    """The image alone: an imported avatar need not carry the card it came with."""
    return SIGNATURE + b"".join(c.encode() for c in found if c.kind not in TEXT_TYPES or not _is_card(c))


def _is_card(chunk: Chunk) -> bool:
    return chunk.data.partition(b"\0")[0].decode("latin-1").lower() in ("chara", "ccv3")


def placeholder(seed: str, side: int = 256) -> list[Chunk]:
    """A flat square in a colour picked from seed: an avatar for a persona that has none on disk."""
    hue = zlib.crc32(seed.encode("utf-8"))
    rgb = bytes((64 + (hue >> s) % 160) for s in (0, 8, 16))
    row = b"\0" + rgb * side  # filter byte 0 (none), then the pixels
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return [Chunk(b"IHDR", ihdr), Chunk(b"IDAT", zlib.compress(row * side, 9)), Chunk(b"IEND", b"")]
