"""What a photo upload costs the web room: the time from sending a post with one photo until the room
answers (reading the form, Pillow's check and the re-encoded copy for pages), for a phone-sized and a
small photo; and how soon an upload over the limit is refused.
Replies are canned (no model), so this is the room's own cost on this machine.

    .venv/bin/python bench/web_photos.py [rounds]
"""

from __future__ import annotations

import asyncio
import io
import random
import statistics
import sys
import time
from pathlib import Path

import aiohttp
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.web import WebAdapter, WebConfig
from bots.app import App
from bots.config import FleetConfig
from bots.llm.canned import CannedClient
from bots.persona import Persona


def photo(width: int, height: int) -> bytes:
    # Noise barely compresses: the file is as big as a detailed phone photo of that size, or bigger.
    rnd = random.Random(1)
    small = Image.frombytes("RGB", (width // 8, height // 8), rnd.randbytes(width * height * 3 // 64))
    out = io.BytesIO()
    small.resize((width, height), Image.Resampling.BICUBIC).save(out, "JPEG", quality=90)
    return out.getvalue()


async def post(http: aiohttp.ClientSession, base: str, csrf: str, data: bytes) -> tuple[int, float]:
    form = aiohttp.FormData()
    form.add_field("text", "look")
    form.add_field("photo", data, filename="p.jpg", content_type="image/jpeg")
    start = time.perf_counter()
    async with http.post(base + "/api/post", data=form, headers={"X-Botfleet-CSRF": csrf}) as r:
        await r.read()
        return r.status, time.perf_counter() - start


async def main(rounds: int) -> None:
    cfg = FleetConfig.model_validate({"pid_file": None, "llm": {"image_max_bytes": 8_000_000}})
    web = WebAdapter(WebConfig(port=0))
    persona = Persona.model_validate({"id": "a", "name": "A", "prompt": "p"})
    app = App(cfg, [persona], llm=CannedClient("nice"), adapters=[web], signals=False)
    await app.start()
    base = web.url.rstrip("/")
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            csrf = (await (await http.get(base + "/api/session")).json())["csrf"]
            await http.post(base + "/api/name", json={"name": "bench"}, headers={"X-Botfleet-CSRF": csrf})
            for w, h in ((4000, 3000), (1280, 960)):
                data = photo(w, h)
                times = []
                for _ in range(rounds):
                    status, took = await post(http, base, csrf, data)
                    assert status == 200, status
                    times.append(took)
                print(
                    f"{w}x{h} JPEG of {len(data) / 1e6:.1f} MB: median {statistics.median(times) * 1000:.0f} ms "
                    f"per post (min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f}; {rounds} posts)"
                )
            big = photo(4000, 3000) * 6  # about 20 MB, over the 8 MB limit
            status, took = await post(http, base, csrf, big)
            print(f"{len(big) / 1e6:.0f} MB upload over the 8 MB limit: {status} after {took * 1000:.0f} ms")
            kept = web.photos
            assert kept is not None
            print(f"room's photo copies: {len(kept)}, {kept.bytes / 1e6:.1f} MB")
    finally:
        await app.stop()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 10))
