"""What a photo costs the fleet: shrinking (Pillow, off the event loop) and the data URL that goes to
the model, for phone-sized photos; and fetching through the size-limited fetcher over loopback.

    python bench/images.py
"""

from __future__ import annotations

import asyncio
import io
import random
import statistics
import sys
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bots.media.fetch import Fetcher, origin
from bots.media.shrink import shrink
from tests.fakes.cdn import FileHost
from tests.test_images_fetch import serving


def photo(width: int, height: int) -> bytes:
    # A smooth gradient with some noise: closer to a camera photo's size than a flat colour.
    rnd = random.Random(1)
    small = Image.frombytes("RGB", (width // 16, height // 16), rnd.randbytes(width // 16 * height // 16 * 3))
    out = io.BytesIO()
    small.resize((width, height), Image.Resampling.BILINEAR).save(out, "JPEG", quality=90)
    return out.getvalue()


def bench_shrink() -> None:
    for w, h in ((1280, 960), (4032, 3024)):
        data = photo(w, h)
        for side in (512, 1024):
            times = []
            for _ in range(5):
                t = time.perf_counter()
                url = shrink(data, side)
                times.append(time.perf_counter() - t)
            print(
                f"shrink {w}x{h} ({len(data) / 1e6:.1f} MB) to {side}: "
                f"median {statistics.median(times) * 1000:.0f} ms, data URL {len(url) / 1000:.0f} kB"
            )


async def bench_fetch() -> None:
    host = FileHost()
    host.put("p", photo(4032, 3024), "image/jpeg")
    host.put("huge", b"\xff" * (64 * 1024 * 1024), "image/jpeg", declare_length=False)
    async with serving(host) as base:
        fetcher = Fetcher(frozenset({origin(base)}), max_bytes=5_000_000, timeout=10)
        try:
            times = []
            for _ in range(10):
                t = time.perf_counter()
                await fetcher.fetch(f"{base}/f/p")
                times.append(time.perf_counter() - t)
            size = len(host.files["p"].data)
            print(f"fetch {size / 1e6:.1f} MB over loopback: median {statistics.median(times) * 1000:.1f} ms")
            t = time.perf_counter()
            try:
                await fetcher.fetch(f"{base}/f/huge")
            except Exception as exc:
                ms = (time.perf_counter() - t) * 1000
                print(f"64 MB file, 5 MB limit, no Content-Length: refused ({exc}) in {ms:.0f} ms")
            await asyncio.wait_for(host.done.wait(), 10)
            print(f"  the server got {host.sent['huge'] / 1e6:.1f} MB of 64 MB out before the connection closed")
        finally:
            await fetcher.close()


if __name__ == "__main__":
    bench_shrink()
    asyncio.run(bench_fetch())
