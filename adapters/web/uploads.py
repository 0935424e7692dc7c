"""Photos posted in the web room: read from a multipart body with a running byte count, so a file
over `llm.image_max_bytes` is refused before the rest of it is read; accepted only when Pillow can
open it as JPEG, PNG, GIF or WebP; shown back to pages as a re-encoded copy (no EXIF, no bytes the
person's file smuggled in) served by the room itself at /photo/<id>, and handed to the core as the
ImagePart bytes the models see.

The room keeps those copies in memory, bounded in count and bytes; /forget drops a person's at once.
"""

from __future__ import annotations

import asyncio
import base64
import io
import secrets
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from aiohttp import BodyPartReader, MultipartReader, web
from PIL import Image

from bots.config import LLMConfig
from bots.core.images import IMAGE_TYPES
from bots.core.ports import ImageUnavailable
from bots.media.shrink import FORMATS, shrink

# Pages show photos at most this big; the model gets its own copy, shrunk to llm.image_max_side.
SHOWN_SIDE = 1280
# Form fields (text, channel, reply_to) are small; a message is at most a few thousand characters.
FIELD_MAX = 64 * 1024
PARTS_MAX = 16
# Copies kept for the pages: a few hundred photos, well inside the memory of a small machine.
KEPT_PHOTOS = 400
KEPT_BYTES = 64_000_000
PHOTO_PATH = "/photo/"


@dataclass(frozen=True, slots=True)
class Photo:
    """One uploaded photo that Pillow opened: its bytes for the model, a re-encoded copy for pages."""

    mime: str
    data: bytes
    shown_mime: str
    shown: bytes


@dataclass(frozen=True, slots=True)
class Form:
    fields: dict[str, str]
    photos: tuple[Photo, ...]


def _mb(n: int) -> str:
    return f"{n / 1_000_000:g} MB"


def too_large(text: str) -> web.HTTPRequestEntityTooLarge:
    # max_size/actual_size are only used by aiohttp's own message; ours says what to do.
    error = web.HTTPRequestEntityTooLarge(max_size=0, actual_size=0, text=text)
    error.force_close()
    return error


async def read_form(request: web.Request, config: LLMConfig) -> Form:
    """The fields and photos of a multipart POST; HTTP errors that say what was wrong."""
    per_file, count = config.image_max_bytes, config.images_per_message
    # The whole body: every photo allowed at its largest, plus the small fields.
    budget = count * per_file + PARTS_MAX * 1024 + 2 * FIELD_MAX
    if request.content_length is not None and request.content_length > budget:
        # Refused from the headers alone: nothing of the body is read.
        raise too_large(f"too much at once: at most {count} photo(s) of {_mb(per_file)} each")
    try:
        reader = await request.multipart()
    except (ValueError, AssertionError, KeyError):
        raise web.HTTPBadRequest(text="malformed form") from None
    try:
        fields, raw = await _parts(reader, per_file, count, budget)
    except ValueError:
        raise web.HTTPBadRequest(text="malformed form") from None
    photos = await asyncio.gather(*(asyncio.to_thread(_open, n, c, d) for n, c, d in raw))
    return Form(fields, tuple(photos))


async def _parts(
    reader: MultipartReader, per_file: int, count: int, budget: int
) -> tuple[dict[str, str], list[tuple[str, str, bytes]]]:
    fields: dict[str, str] = {}
    raw: list[tuple[str, str, bytes]] = []
    read = 0
    for _ in range(PARTS_MAX + 1):
        part = await reader.next()
        if part is None:
            break
        if not isinstance(part, BodyPartReader) or part.name is None:
            raise web.HTTPBadRequest(text="malformed form")
        if len(fields) + len(raw) >= PARTS_MAX:
            raise web.HTTPBadRequest(text="too many form fields")
        if part.filename is None:
            data = await _read(part, FIELD_MAX, f"the {part.name} field is too long")
            read += len(data)
            fields[part.name] = data.decode("utf-8", "replace")
            continue
        name = part.filename[:80] or "a file"
        ctype = (part.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if part.name != "photo" or not ctype.startswith("image/"):
            raise web.HTTPUnsupportedMediaType(text=f"{name}: only photos can be posted (JPEG, PNG, GIF or WebP)")
        if len(raw) >= count:
            off = "photos are turned off here (llm.images_per_message: 0)"
            raise too_large(f"at most {count} photo(s) per message" if count else off)
        data = await _read(part, per_file, f"{name} is over the {_mb(per_file)} limit for a photo")
        read += len(data)
        if read > budget:
            raise too_large(f"too much at once: at most {count} photo(s) of {_mb(per_file)} each")
        raw.append((name, ctype, data))
    else:
        raise web.HTTPBadRequest(text="too many form fields")
    return fields, raw


async def _read(part: BodyPartReader, limit: int, why: str) -> bytes:
    """A part's bytes, stopping as soon as they pass limit (the rest is never read)."""
    chunks: list[bytes] = []
    got = 0
    while chunk := await part.read_chunk(64 * 1024):
        got += len(chunk)
        if got > limit:
            raise too_large(why)
        chunks.append(chunk)
    return b"".join(chunks)


def _open(name: str, claimed: str, data: bytes) -> Photo:
    """The photo if Pillow opens it as one of the formats the models take; 415 otherwise."""
    try:
        url = shrink(data, SHOWN_SIDE)
        with Image.open(io.BytesIO(data), formats=FORMATS) as img:
            mime = Image.MIME.get(img.format or "", claimed)
    except ImageUnavailable as exc:
        why = "has too many pixels" if exc.kind == "too_many_pixels" else "is not a photo this room can open"
        raise web.HTTPUnsupportedMediaType(text=f"{name} {why} (JPEG, PNG, GIF or WebP)") from None
    except (OSError, ValueError):
        raise web.HTTPUnsupportedMediaType(text=f"{name} is not a photo this room can open") from None
    if mime not in IMAGE_TYPES:
        raise web.HTTPUnsupportedMediaType(text=f"{name}: only JPEG, PNG, GIF or WebP")
    head, _, body = url.partition(",")
    return Photo(mime, data, head.removeprefix("data:").removesuffix(";base64"), base64.b64decode(body))


@dataclass(frozen=True, slots=True)
class Kept:
    mime: str
    data: bytes
    user_id: str


class Photos:
    """The shown copies by id (random, so a forgotten photo's address cannot be guessed back)."""

    def __init__(self, max_count: int = KEPT_PHOTOS, max_bytes: int = KEPT_BYTES) -> None:
        self.max_count = max_count
        self.max_bytes = max_bytes
        self.bytes = 0
        self._kept: OrderedDict[str, Kept] = OrderedDict()

    def __len__(self) -> int:
        return len(self._kept)

    def add(self, photo: Photo, user_id: str) -> str:
        """Keep a photo's shown copy; returns the same-origin path pages load it from."""
        pid = secrets.token_urlsafe(12)
        self._kept[pid] = Kept(photo.shown_mime, photo.shown, user_id)
        self.bytes += len(photo.shown)
        while len(self._kept) > self.max_count or self.bytes > self.max_bytes:
            self._pop(next(iter(self._kept)))
        return PHOTO_PATH + pid

    def get(self, pid: str) -> Kept | None:
        return self._kept.get(pid)

    def forget_user(self, user_id: str) -> int:
        gone = [pid for pid, k in self._kept.items() if k.user_id == user_id]
        for pid in gone:
            self._pop(pid)
        return len(gone)

    def discard(self, paths: Sequence[str]) -> None:
        for path in paths:
            self._pop(path.removeprefix(PHOTO_PATH))

    def _pop(self, pid: str) -> None:
        kept = self._kept.pop(pid, None)
        if kept is not None:
            self.bytes -= len(kept.data)
