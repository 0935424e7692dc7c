"""A running web room for tests: config.yaml and persona files in a temp dir (so check and reload read
real files), the whole App in-process on a free port, the real openai SDK against the fake endpoint,
and a small HTTP client that behaves like a page (session cookie, CSRF header, the live stream)."""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from adapters.web import WebAdapter
from bots.app import App, make_llm
from bots.loading import load_all
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.polling import wait_for

ADMIN_TOKEN = "op-secret-token-1234"
PERSONAS = ("skeptic", "supporter", "realist", "nerd")
_SYSTEM = re.compile(r"You are (\w+)\.")


def persona_yaml(pid: str) -> str:
    # One persona with limits, so the operator page has some to show.
    limits = "limits: {per_minute: 6, daily_tokens: 20000}\n" if pid == "skeptic" else ""
    # And one that reacts, for likes.
    limits += 'reactions:\n  - {keywords: [kitten], emoji: "❤️"}\n' if pid == "supporter" else ""
    return (
        f"id: {pid}\nname: The {pid.title()}\nbio: The {pid} of the fleet.\nprompt: You are {pid}.\n"
        "triggers:\n  - mention: true\n  - reply: true\n  - command: true\n" + limits
    )


def config_yaml(admin_token: str, feed: dict[str, Any] | None = None, llm: dict[str, Any] | None = None) -> str:
    feed = {"channel": "feed", "comments": 3, "window_seconds": 0, "reactions": False, **(feed or {})}
    return json.dumps(
        {
            "personas_dir": "personas",
            "pid_file": None,
            "fleet": {"reply_delay_seconds": [0, 0]},
            "about": {"disclosure": ""},
            "llm": {"provider": "openai", "model": "fake-gpt", **(llm or {})},
            "adapters": {"web": {"host": "127.0.0.1", "port": 0, "admin_token": admin_token}},
            "feeds": {"web": [feed]},
        }
    )


def who_writes(body: dict[str, Any]) -> str:
    """The persona a request is for, from its system prompt ("You are skeptic.")."""
    system = next((m["content"] for m in body["messages"] if m["role"] == "system"), "")
    found = _SYSTEM.search(system)
    return found.group(1) if found else "?"


def default_reply(body: dict[str, Any]) -> str:
    return f"{who_writes(body)} thinks that is lovely news."


@dataclass
class Page:
    """What one browser page does over HTTP: a session cookie, the CSRF header, the stream."""

    base: str
    http: aiohttp.ClientSession
    csrf: str = ""
    events: list[dict[str, Any]] = field(default_factory=list)
    _reader: asyncio.Task[None] | None = None

    async def open(self, name: str = "alice") -> Page:
        self.csrf = (await self.get("/api/session"))["csrf"]
        if name:
            await self.post("/api/name", {"name": name})
        return self

    async def get(self, path: str) -> Any:
        async with self.http.get(self.base + path) as r:
            assert r.status == 200, await r.text()
            return await r.json()

    async def post(self, path: str, data: dict[str, Any], *, expect: int = 200, **headers: str) -> Any:
        sent = {"X-Botfleet-CSRF": self.csrf, **headers}
        async with self.http.post(self.base + path, json=data, headers=sent) as r:
            assert r.status == expect, f"{r.status}: {await r.text()}"
            return await r.json() if expect == 200 else await r.text()

    async def upload(
        self, path: str, fields: dict[str, str], photos: list[tuple[str, bytes, str]], *, expect: int = 200
    ) -> Any:
        """A multipart POST as the photo picker sends it: fields, then each (file name, bytes, type)."""
        form = aiohttp.FormData()
        for k, v in fields.items():
            form.add_field(k, v)
        for name, data, ctype in photos:
            form.add_field("photo", data, filename=name, content_type=ctype)
        async with self.http.post(self.base + path, data=form, headers={"X-Botfleet-CSRF": self.csrf}) as r:
            assert r.status == expect, f"{r.status}: {await r.text()}"
            return await r.json() if expect == 200 else await r.text()

    async def listen(self) -> None:
        ready = asyncio.Event()

        async def read() -> None:
            async with self.http.get(self.base + "/api/stream", timeout=aiohttp.ClientTimeout(total=None)) as r:
                ready.set()
                async for line in r.content:
                    if line.startswith(b"data: "):
                        self.events.append(json.loads(line[6:]))

        self._reader = asyncio.create_task(read())
        await asyncio.wait_for(ready.wait(), 5)
        # The server registers the stream before its first byte: wait until the hub lists it.
        await asyncio.sleep(0.05)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        await self.http.close()


@dataclass
class WebRoom:
    app: App
    web: WebAdapter
    fake: FakeOpenAI
    home: Path
    pages: list[Page] = field(default_factory=list)

    @property
    def base(self) -> str:
        return self.web.url.rstrip("/")

    async def page(self, name: str = "alice") -> Page:
        jar = aiohttp.CookieJar(unsafe=True)  # cookies for 127.0.0.1, an IP address
        page = Page(self.base, aiohttp.ClientSession(cookie_jar=jar))
        self.pages.append(page)
        return await page.open(name)

    def comments(self, post_id: str) -> list[dict[str, Any]]:
        thread = self.web.hub.messages(self.web.thread_of(post_id))
        return [m for m in thread if m["author"]["ai"] and not m.get("streaming")]

    async def settled(self) -> None:
        await self.app.fleet.drain()


@asynccontextmanager
async def web_room(
    tmp_path: Path,
    *,
    reply: Callable[[dict[str, Any]], str] = default_reply,
    admin_token: str = ADMIN_TOKEN,
    chunk_seconds: float = 0.0,
    feed: dict[str, Any] | None = None,
    sample_seconds: float = 5.0,
    seed: int = 2,
    llm: dict[str, Any] | None = None,
    vision: bool = True,
) -> AsyncIterator[WebRoom]:
    (tmp_path / "personas").mkdir()
    for pid in PERSONAS:
        (tmp_path / "personas" / f"{pid}.yaml").write_text(persona_yaml(pid))
    config = tmp_path / "config.yaml"
    config.write_text(config_yaml(admin_token, feed, llm))
    cfg, personas = load_all(config)
    async with FakeOpenAI(reply=reply, chunk_seconds=chunk_seconds, vision=vision) as fake:
        llm = make_llm(cfg, {"OPENAI_BASE_URL": fake.base_url, "OPENAI_API_KEY": "test-key"})
        web = WebAdapter(cfg.adapters.web, sample_seconds=sample_seconds)  # type: ignore[attr-defined]
        app = App(cfg, personas, llm=llm, adapters=[web], config_path=config, signals=False, rng=random.Random(seed))
        await app.start()
        room = WebRoom(app, web, fake, tmp_path)
        try:
            await wait_for(lambda: web.url)
            yield room
        finally:
            for page in room.pages:
                await page.close()
            await app.stop()
