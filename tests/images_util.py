"""Photos for the image tests: real JPEG bytes, and reading back what reached the model."""

from __future__ import annotations

import base64
import io
import os
import random

from PIL import Image


def jpeg(width: int, height: int, *, noisy: bool = False, seed: int = 1) -> bytes:
    """A JPEG of that size; noisy ones barely compress, so their byte size grows with their area."""
    if noisy:
        rnd = random.Random(seed)
        img = Image.frombytes("RGB", (width, height), rnd.randbytes(width * height * 3))
    else:
        img = Image.new("RGB", (width, height), (200, 120, 40))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=90)
    return out.getvalue()


def decoded(data_url: str) -> Image.Image:
    """The image a data URL holds (raises if it is not a base64 image data URL)."""
    head, _, body = data_url.partition(",")
    assert head.startswith("data:image/") and head.endswith(";base64"), head[:40]
    return Image.open(io.BytesIO(base64.b64decode(body, validate=True)))


def random_bytes(n: int) -> bytes:
    return os.urandom(n)
