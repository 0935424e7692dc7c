"""Spotting an endpoint that cuts streams short because another request arrived.

llama-cpp-python's server (`python -m llama_cpp.server`, a common "llama.cpp server" behind an
OpenAI-compatible URL) by default interrupts the request it is running when a new one arrives: the
running stream just ends, with [DONE] but no finish reason. With several personas answering at
once, most replies are then cut off, and nothing in the endpoint's answers says why. The pattern is
visible from our side: streams that end early while other requests started during them.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from urllib.parse import urlsplit

log = logging.getLogger("botfleet.llm")

ADVICE = (
    "llm: %d replies from %s ended without a finish reason while other requests started: the endpoint "
    "seems to interrupt a running request when a new one arrives, as llama-cpp-python's server "
    "(python -m llama_cpp.server) does by default: start that server with --interrupt_requests False, "
    "or set llm.max_concurrency: 1"
)


def endpoint_host(base_url: str | None) -> str:
    """Host (and port) of an endpoint URL for logs: never its path, query or credentials."""
    if not base_url:
        return "api.openai.com"
    parts = urlsplit(base_url if "//" in base_url else f"//{base_url}")
    host = parts.hostname or "?"
    return f"{host}:{parts.port}" if parts.port else host


class CutStreams:
    """Logs every stream that ended without a finish reason, and says once what to do when several
    of them overlapped with newer requests (`threshold` within `window` seconds)."""

    def __init__(
        self,
        endpoint: str,
        *,
        threshold: int = 3,
        window: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.endpoint = endpoint
        self.threshold = threshold
        self.window = window
        self.clock = clock
        self.advised = False
        self._starts = 0
        self._overlapped: deque[float] = deque()

    def started(self) -> int:
        """Call when a request goes out; returns the token to pass to `ended_early`."""
        self._starts += 1
        return self._starts

    def ended_early(self, token: int, persona_id: str) -> None:
        log.warning(
            "reply by %s: the stream from %s ended without a finish reason (cut off)", persona_id, self.endpoint
        )
        if self._starts <= token:
            return  # nothing started meanwhile: a dying worker or proxy, not an interruption
        now = self.clock()
        self._overlapped.append(now)
        while self._overlapped and now - self._overlapped[0] > self.window:
            self._overlapped.popleft()
        if len(self._overlapped) >= self.threshold and not self.advised:
            self.advised = True
            log.warning(ADVICE, len(self._overlapped), self.endpoint)
