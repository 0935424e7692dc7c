"""Photos in the web room, over real HTTP: an uploaded photo reaches the models that can see it as a data
URL, a model that cannot see gets the placeholder, pages load the photo from the room itself, and
uploads that are too big or not photos are refused (the too-big ones before they are read whole)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image
from yarl import URL

from adapters.web.sessions import CSRF_HEADER, SESSION_COOKIE
from adapters.web.uploads import Photo, Photos
from tests.images_util import decoded, jpeg, random_bytes
from tests.web_world import Page, WebRoom, web_room

VISION = {"model": "gpt-4o-mini", "image_max_side": 256, "image_max_bytes": 200_000}


@pytest.fixture
async def room(tmp_path: Path) -> AsyncIterator[WebRoom]:
    async with web_room(tmp_path, llm=VISION) as r:
        yield r


def exif_jpeg(width: int, height: int) -> bytes:
    """A JPEG whose EXIF says where it was taken (GPS), as a phone's photo does."""
    img = Image.new("RGB", (width, height), (30, 140, 200))
    exif = Image.Exif()
    exif[0x8825] = {1: "N", 2: (52.0, 22.0, 0.0)}  # GPSInfo
    out = io.BytesIO()
    img.save(out, "JPEG", exif=exif.tobytes())
    return out.getvalue()


async def test_a_photo_post_gets_comments_that_see_it_and_pages_load_it_from_the_room(room: WebRoom) -> None:
    alice, bob = await room.page("alice"), await room.page("bob")
    await bob.listen()
    photo = exif_jpeg(1600, 1200)
    pid = (await alice.upload("/api/post", {"text": "my new cat"}, [("IMG_0042.jpg", photo, "image/jpeg")]))["id"]
    await room.settled()
    comments = room.comments(pid)
    assert len({c["author"]["persona"] for c in comments}) == 3
    assert len(room.fake.requests) == 3
    for body in room.fake.requests:
        text, image = body["messages"][-1]["content"]
        assert "[photo: 'my new cat']" in text["text"]
        assert decoded(image["image_url"]["url"]).size == (256, 192)  # llm.image_max_side
    assert len(room.fake.images) == 3

    # Bob's page got the post with a same-origin address for the photo, never the bytes.
    [post] = [e["message"] for e in bob.of("message") if e["message"].get("post")]
    [src] = post["photos"]
    assert src.startswith("/photo/") and "base64" not in str(post)
    async with bob.http.get(room.base + src) as r:
        assert r.status == 200
        assert r.headers["Content-Type"] == "image/jpeg" and r.headers["X-Content-Type-Options"] == "nosniff"
        assert "img-src 'self';" in r.headers["Content-Security-Policy"]
        shown = Image.open(io.BytesIO(await r.read()))
    # Re-encoded for the page: smaller, and the place it was taken is gone.
    assert shown.size == (1280, 960) and not shown.getexif()


async def test_a_model_that_cannot_see_gets_the_placeholder_and_is_told_so(tmp_path: Path) -> None:
    async with web_room(tmp_path, llm={"model": "gpt-3.5-turbo"}, vision=False) as room:
        alice = await room.page()
        pid = (await alice.upload("/api/post", {"text": "my new cat"}, [("cat.jpg", jpeg(64, 48), "image/jpeg")]))["id"]
        await room.settled()
        assert len(room.comments(pid)) == 3
        for body in room.fake.requests:
            assert "[photo: 'my new cat', you cannot see images]" in body["messages"][-1]["content"]
            assert "say honestly that you cannot see images" in body["messages"][0]["content"]
        assert room.fake.images == []


async def test_a_photo_alone_is_a_post_and_a_photo_in_a_room_reaches_the_persona_mentioned(room: WebRoom) -> None:
    alice = await room.page()
    pid = (await alice.upload("/api/post", {}, [("cat.png", _png(), "image/png")]))["id"]
    await room.settled()
    assert len(room.comments(pid)) == 3
    assert all("[photo]" in body["messages"][-1]["content"][0]["text"] for body in room.fake.requests)

    await alice.upload(
        "/api/say", {"channel": "general", "text": "what breed @nerd?"}, [("c.jpg", jpeg(90, 60), "image/jpeg")]
    )
    await room.settled()
    body = room.fake.requests[-1]
    assert "You are nerd." in body["messages"][0]["content"]
    assert decoded(body["messages"][-1]["content"][1]["image_url"]["url"]).size == (90, 60)
    [said] = [m for m in (await alice.get("/api/room?channel=general"))["messages"] if not m["author"]["ai"]]
    assert len(said["photos"]) == 1


async def test_a_file_that_is_not_a_photo_is_refused_and_nothing_is_posted(room: WebRoom) -> None:
    alice = await room.page()
    why = await alice.upload("/api/post", {"text": "notes"}, [("notes.txt", b"hello", "text/plain")], expect=415)
    assert why == "notes.txt: only photos can be posted (JPEG, PNG, GIF or WebP)"
    # Claiming to be a photo is not enough: Pillow must open it.
    fake = random_bytes(5000)
    why = await alice.upload("/api/post", {"text": "x"}, [("cat.png", fake, "image/png")], expect=415)
    assert why.startswith("cat.png is not a photo this room can open")
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>'
    await alice.upload("/api/post", {"text": "x"}, [("a.svg", svg, "image/svg+xml")], expect=415)
    assert room.web.hub.posts(room.web.feed) == [] and room.fake.requests == []


async def test_too_many_photos_are_refused_with_the_limit(tmp_path: Path) -> None:
    async with web_room(tmp_path, llm={**VISION, "images_per_message": 2}) as room:
        alice = await room.page()
        three = [(f"{n}.jpg", jpeg(40, 30), "image/jpeg") for n in range(3)]
        assert await alice.upload("/api/post", {"text": "x"}, three, expect=413) == "at most 2 photo(s) per message"
        assert room.web.hub.posts(room.web.feed) == []


async def _raw(page: Page, head: str, body: bytes = b"") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A request written by hand on a socket, so the test decides how much of the body is ever sent."""
    url = URL(page.base)
    cookie = page.http.cookie_jar.filter_cookies(url)[SESSION_COOKIE].value
    reader, writer = await asyncio.open_connection(url.host, url.port)
    writer.write(
        f"{head}\r\nHost: {url.host}:{url.port}\r\nCookie: {SESSION_COOKIE}={cookie}\r\n"
        f"{CSRF_HEADER}: {page.csrf}\r\n\r\n".encode()
        + body
    )
    await writer.drain()
    return reader, writer


async def _response(reader: asyncio.StreamReader) -> tuple[int, str]:
    raw = await asyncio.wait_for(reader.read(64 * 1024), 10)
    head, _, body = raw.decode(errors="replace").partition("\r\n\r\n")
    return int(head.split()[1]), body


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


async def test_an_oversized_photo_is_refused_before_the_rest_of_it_is_sent(room: WebRoom) -> None:
    alice = await room.page()
    head = "POST /api/post HTTP/1.1\r\nContent-Type: multipart/form-data; boundary=XyZ\r\nTransfer-Encoding: chunked"
    start = (
        b'--XyZ\r\nContent-Disposition: form-data; name="photo"; filename="huge.jpg"\r\n'
        b"Content-Type: image/jpeg\r\n\r\n"
    )
    reader, writer = await _raw(alice, head, _chunk(start))
    # 64 kB more than the 200 kB limit of a photo out of a file said to be 40 MB: the rest is never sent.
    for _ in range(0, 264_000, 8000):
        writer.write(_chunk(b"\xff" * 8000))
    await writer.drain()
    status, body = await _response(reader)
    writer.close()
    assert status == 413 and "huge.jpg is over the 0.2 MB limit for a photo" in body
    assert room.web.hub.posts(room.web.feed) == [] and room.fake.requests == []


async def test_a_body_declared_too_big_is_refused_from_its_headers_alone(room: WebRoom) -> None:
    alice = await room.page()
    head = "POST /api/post HTTP/1.1\r\nContent-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: 40000000"
    reader, writer = await _raw(alice, head)  # not one byte of the body
    status, body = await _response(reader)
    writer.close()
    assert status == 413 and "too much at once: at most 4 photo(s) of 0.2 MB each" in body


async def test_forget_removes_the_persons_photos_from_the_room(room: WebRoom) -> None:
    alice, bob = await room.page("alice"), await room.page("bob")
    cat = [("cat.jpg", jpeg(64, 48), "image/jpeg")]
    await alice.upload("/api/post", {"text": "my cat"}, cat)
    await bob.upload("/api/post", {"text": "my dog"}, [("dog.jpg", jpeg(48, 64), "image/jpeg")])
    await room.settled()
    alices, bobs = (
        [p["photos"][0] for p in room.web.hub.posts(room.web.feed) if p["author"]["name"] == n]
        for n in ("alice", "bob")
    )
    await alice.post("/api/command", {"command": "forget", "channel": room.web.feed})
    await room.settled()
    async with alice.http.get(room.base + alices[0]) as r:
        assert r.status == 404
    async with alice.http.get(room.base + bobs[0]) as r:
        assert r.status == 200
    gallery = room.app.fleet.gallery
    assert len(gallery) == 1 and gallery.forget_user("web", _user(alice, room)) == 0


def _user(page: Page, room: WebRoom) -> str:
    cookie = page.http.cookie_jar.filter_cookies(URL(page.base))[SESSION_COOKIE].value
    s = room.web.sessions.get(cookie)
    assert s is not None
    return s.user_id


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", (30, 20), (0, 0, 0, 0)).save(out, "PNG")
    return out.getvalue()


def test_the_rooms_copies_are_bounded_in_count_and_bytes() -> None:
    photos = Photos(max_count=3, max_bytes=250)
    paths = [photos.add(Photo("image/jpeg", b"", "image/jpeg", b"x" * 100), "u") for _ in range(2)]
    assert len(photos) == 2 and photos.bytes == 200
    paths.append(photos.add(Photo("image/jpeg", b"", "image/jpeg", b"x" * 100), "v"))
    # Over 250 bytes: the oldest goes.
    assert len(photos) == 2 and photos.get(paths[0].removeprefix("/photo/")) is None
    assert photos.forget_user("u") == 1 and len(photos) == 1 and photos.bytes == 100


async def test_a_photo_replying_to_a_comment_is_seen_by_that_persona_in_the_posts_thread(room: WebRoom) -> None:
    alice = await room.page()
    pid = (await alice.post("/api/post", {"text": "I adopted a cat!"}))["id"]
    await room.settled()
    comment = room.comments(pid)[0]
    thread = room.web.thread_of(pid)
    fields = {"channel": thread, "text": "here she is", "reply_to": comment["id"]}
    mid = (await alice.upload("/api/say", fields, [("miso.jpg", jpeg(300, 200), "image/jpeg")]))["id"]
    await room.settled()
    [answer] = [c for c in room.comments(pid) if c["reply_to"] == mid]
    assert answer["author"]["persona"] == comment["author"]["persona"]
    text, image = room.fake.requests[-1]["messages"][-1]["content"]
    assert "[photo: 'here she is']" in text["text"] and decoded(image["image_url"]["url"]).size == (256, 171)
    # A command carries no photos.
    why = await alice.upload(
        "/api/say", {"channel": thread, "text": "/more"}, [("a.jpg", jpeg(8, 8), "image/jpeg")], expect=400
    )
    assert why == "a /command cannot carry photos"
