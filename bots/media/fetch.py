"""Fetching a posted photo from its platform's own hosts: redirects only within those hosts, the size
limit enforced while the body streams (a declared length over it is refused before reading), one
timeout for the whole fetch. Errors name a kind, never the URL: Telegram's file URLs hold the token."""

from __future__ import annotations

import asyncio

import aiohttp
import yarl

from bots.core.ports import ImageUnavailable

MAX_REDIRECTS = 3
CHUNK = 64 * 1024


def origin(url: str | yarl.URL) -> tuple[str, int]:
    """(host, port) of url; what "the platform's own host" is compared by."""
    u = yarl.URL(url) if isinstance(url, str) else url
    return (u.host or "").lower(), u.port or 0


class Fetcher:
    """One aiohttp session for an adapter's photo fetches, opened on first use."""

    def __init__(self, hosts: frozenset[tuple[str, int]], *, max_bytes: int, timeout: float) -> None:
        self.hosts = hosts
        self.max_bytes = max_bytes
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    def allows(self, url: str | yarl.URL, hosts: frozenset[tuple[str, int]] | None = None) -> bool:
        u = yarl.URL(url) if isinstance(url, str) else url
        return u.scheme in ("https", "http") and origin(u) in (self.hosts if hosts is None else hosts)

    async def fetch(self, url: str, hosts: frozenset[tuple[str, int]] | None = None) -> tuple[bytes, str]:
        """(body, content type) of url, from `hosts` (default: the fetcher's); raises ImageUnavailable."""
        try:
            async with asyncio.timeout(self.timeout):
                return await self._fetch(yarl.URL(url, encoded=True), hosts)
        except TimeoutError:
            raise ImageUnavailable("timeout") from None
        except aiohttp.ClientError as exc:
            # The exception text can hold the URL: only its type goes on.
            raise ImageUnavailable(f"connection:{type(exc).__name__}") from None

    async def _fetch(self, url: yarl.URL, hosts: frozenset[tuple[str, int]] | None) -> tuple[bytes, str]:
        if self._session is None or self._session.closed:
            # No cookies, no proxy from the environment: the request goes where the URL says or nowhere.
            self._session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(), trust_env=False)
        for _ in range(MAX_REDIRECTS + 1):
            if not self.allows(url, hosts):
                raise ImageUnavailable("foreign_host")
            async with self._session.get(url, allow_redirects=False) as resp:
                if resp.status in (301, 302, 303, 307, 308):
                    location = resp.headers.get("Location")
                    if not location:
                        raise ImageUnavailable("bad_redirect")
                    url = url.join(yarl.URL(location))
                    continue
                if resp.status != 200:
                    raise ImageUnavailable(f"http_{resp.status}")
                if resp.content_length is not None and resp.content_length > self.max_bytes:
                    raise ImageUnavailable("too_big")
                body = bytearray()
                async for chunk in resp.content.iter_chunked(CHUNK):
                    body += chunk
                    if len(body) > self.max_bytes:
                        # Leaving the block closes the connection: the rest is never downloaded.
                        raise ImageUnavailable("too_big")
                return bytes(body), resp.headers.get("Content-Type", "")
        raise ImageUnavailable("too_many_redirects")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
