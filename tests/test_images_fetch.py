"""Fetching and shrinking photos (bots.media): only the platform's own hosts, redirects included; the
size limit holds while the body streams, so an oversized file is cut off, not downloaded; what goes
on is a real image, shrunk."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiohttp import web
from PIL import Image

from bots.core.ports import ImageUnavailable
from bots.media.fetch import Fetcher, origin
from bots.media.shrink import shrink
from tests.fakes.cdn import FileHost
from tests.images_util import decoded, jpeg, random_bytes


@asynccontextmanager
async def serving(host: FileHost) -> AsyncIterator[str]:
    """host on 127.0.0.1 at a free port; yields its base URL."""
    app = web.Application()

    async def serve(request: web.Request) -> web.StreamResponse:
        return await host.serve(request.match_info["key"], request)

    app.router.add_get("/f/{key}", serve)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def fetcher_for(base: str, max_bytes: int = 1_000_000, timeout: float = 5.0) -> Fetcher:
    return Fetcher(frozenset({origin(base)}), max_bytes=max_bytes, timeout=timeout)


async def test_a_photo_from_the_platform_host_is_fetched() -> None:
    host = FileHost()
    host.put("cat", jpeg(100, 80), "image/jpeg")
    async with serving(host) as base:
        fetcher = fetcher_for(base)
        try:
            data, kind = await fetcher.fetch(f"{base}/f/cat")
        finally:
            await fetcher.close()
    assert data == host.files["cat"].data and kind == "image/jpeg"


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_an_oversized_file_is_refused_without_being_downloaded_whole(declared: bool) -> None:
    host = FileHost()
    size = 64 * 1024 * 1024
    host.put("huge", b"\xff" * size, "image/jpeg", declare_length=declared)
    async with serving(host) as base:
        fetcher = fetcher_for(base, max_bytes=1_000_000)
        try:
            with pytest.raises(ImageUnavailable) as refused:
                await fetcher.fetch(f"{base}/f/huge")
        finally:
            await fetcher.close()
        assert refused.value.kind == "too_big"
        await asyncio.wait_for(host.done.wait(), 10)
    # The server saw the connection go: it never got to the end of the file.
    assert "huge" not in host.finished and host.sent["huge"] < size


async def test_a_redirect_to_another_host_is_not_followed() -> None:
    platform, elsewhere = FileHost(), FileHost()
    elsewhere.put("bait", jpeg(10, 10), "image/jpeg")
    async with serving(platform) as base, serving(elsewhere) as other:
        platform.put("cat", b"", "image/jpeg", redirect=f"{other}/f/bait")
        platform.put("moved", b"", "image/jpeg", redirect="/f/real")
        platform.put("real", jpeg(10, 10), "image/jpeg")
        fetcher = fetcher_for(base)
        try:
            with pytest.raises(ImageUnavailable) as refused:
                await fetcher.fetch(f"{base}/f/cat")
            # Within the platform's own host a redirect is followed.
            data, _ = await fetcher.fetch(f"{base}/f/moved")
        finally:
            await fetcher.close()
    assert refused.value.kind == "foreign_host" and elsewhere.hits == []
    assert data == platform.files["real"].data


async def test_a_url_on_another_host_is_never_requested_and_errors_carry_no_url() -> None:
    elsewhere = FileHost()
    async with serving(elsewhere) as other:
        fetcher = Fetcher(frozenset({("cdn.discordapp.com", 443)}), max_bytes=1000, timeout=5)
        with pytest.raises(ImageUnavailable) as refused:
            await fetcher.fetch(f"{other}/f/secret-token-123")
        dead = Fetcher(frozenset({("127.0.0.1", 9)}), max_bytes=1000, timeout=5)
        with pytest.raises(ImageUnavailable) as failed:
            await dead.fetch("http://127.0.0.1:9/file/bot123:secret-token-123/x.jpg")
        await dead.close()
    assert refused.value.kind == "foreign_host" and elsewhere.hits == []
    assert "secret-token" not in str(failed.value) and failed.value.kind.startswith("connection")


async def test_a_slow_host_times_out() -> None:
    app = web.Application()

    async def stall(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response()

    app.router.add_get("/f/slow", stall)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    fetcher = fetcher_for(base, timeout=0.2)
    try:
        with pytest.raises(ImageUnavailable) as refused:
            await fetcher.fetch(f"{base}/f/slow")
    finally:
        await fetcher.close()
        await runner.cleanup()
    assert refused.value.kind == "timeout"


def test_a_photo_is_shrunk_to_the_long_side_and_sent_as_jpeg() -> None:
    url = shrink(jpeg(2000, 500), 400)
    assert url.startswith("data:image/jpeg;base64,")
    assert decoded(url).size == (400, 100)
    small = decoded(shrink(jpeg(100, 50), 400))
    assert small.size == (100, 50)  # never enlarged


def test_a_transparent_png_stays_png_and_a_gif_gives_its_first_frame() -> None:
    out = io.BytesIO()
    Image.new("RGBA", (50, 50), (0, 0, 0, 0)).save(out, "PNG")
    assert shrink(out.getvalue(), 20).startswith("data:image/png;base64,")
    frames = [Image.new("P", (30, 30), i) for i in range(3)]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:])
    assert decoded(shrink(gif.getvalue(), 64)).size == (30, 30)


def test_bytes_that_are_no_image_are_refused() -> None:
    for junk in (b"", random_bytes(5000), b"<svg xmlns='http://www.w3.org/2000/svg'/>"):
        with pytest.raises(ImageUnavailable) as refused:
            shrink(junk, 100)
        assert refused.value.kind == "not_an_image"


def test_a_decompression_bomb_is_refused_before_decoding() -> None:
    out = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(out, "PNG")  # 100 megapixels in a few kB
    with pytest.raises(ImageUnavailable) as refused:
        shrink(out.getvalue(), 100)
    assert refused.value.kind == "too_many_pixels"
