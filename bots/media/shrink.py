"""Photos as data URLs the model endpoint takes: decoded by Pillow (so only real JPEG, PNG, GIF or
WebP pass), the long side cut to max_side, re-encoded as JPEG (PNG when transparent)."""

from __future__ import annotations

import asyncio
import base64
import io
import warnings

from PIL import Image, UnidentifiedImageError

from bots.core.ports import ImageUnavailable

FORMATS = ("JPEG", "PNG", "GIF", "WEBP")
# A small file can claim a huge canvas (a decompression bomb): refuse before decoding it.
MAX_PIXELS = 40_000_000


def shrink(data: bytes, max_side: int) -> str:
    """data as a data URL with the long side at most max_side; raises ImageUnavailable."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=FORMATS) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise ImageUnavailable("too_many_pixels")
                img.seek(0)  # the first frame of an animation
                img.thumbnail((max_side, max_side))
                alpha = img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info)
                out = io.BytesIO()
                if alpha:
                    img.convert("RGBA").save(out, "PNG", optimize=True)
                    mime = "image/png"
                else:
                    img.convert("RGB").save(out, "JPEG", quality=85)
                    mime = "image/jpeg"
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageUnavailable("too_many_pixels") from None
    except (UnidentifiedImageError, OSError, ValueError, EOFError):
        raise ImageUnavailable("not_an_image") from None
    return f"data:{mime};base64,{base64.b64encode(out.getvalue()).decode('ascii')}"


async def as_data_url(data: bytes, max_side: int) -> str:
    """shrink off the event loop: decoding a large photo takes tens of milliseconds."""
    return await asyncio.to_thread(shrink, data, max_side)
