"""A fake file host for the platform fakes: Discord's CDN attachment route and Telegram's file route
serve files from here, in 64 kB chunks, recording what was asked for and how much went out, so a test
can tell a refused download from a finished one. A file may instead redirect anywhere."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web

CHUNK = 64 * 1024


@dataclass
class FakeFile:
    data: bytes
    content_type: str
    # False: sent chunked, with no Content-Length, so only counting while streaming can stop it.
    declare_length: bool = True
    redirect: str | None = None


@dataclass
class FileHost:
    files: dict[str, FakeFile] = field(default_factory=dict)
    hits: list[str] = field(default_factory=list)
    sent: dict[str, int] = field(default_factory=dict)  # bytes written per file
    finished: set[str] = field(default_factory=set)  # files sent to the end
    # Set once a handler is over (finished or cut off): tests wait on it before reading `sent`.
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def put(self, key: str, data: bytes, content_type: str, **options: object) -> None:
        self.files[key] = FakeFile(data, content_type, **options)  # type: ignore[arg-type]

    async def serve(self, key: str, request: web.Request) -> web.StreamResponse:
        self.hits.append(key)
        f = self.files.get(key)
        if f is None:
            return web.json_response({"message": "404: Not Found", "code": 0}, status=404)
        if f.redirect is not None:
            raise web.HTTPFound(f.redirect)
        resp = web.StreamResponse(headers={"Content-Type": f.content_type})
        if f.declare_length:
            resp.content_length = len(f.data)
        try:
            await resp.prepare(request)
            self.sent[key] = 0
            for i in range(0, len(f.data), CHUNK):
                await resp.write(f.data[i : i + CHUNK])
                self.sent[key] += len(f.data[i : i + CHUNK])
            await resp.write_eof()
            self.finished.add(key)
        except ConnectionError:
            pass  # the client hung up mid-file (a refused download): what was sent is in `sent`
        finally:
            self.done.set()
        return resp
