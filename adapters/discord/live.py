"""The message a streamed reply is written into, edited as the model writes.

Pacing uses the fleet's clock and sleep, never the loop's, so tests and outside harnesses control time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from adapters.discord.targets import Target

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[object]]


class Live:
    """The first write waits `interval`, so a reply that finishes quickly goes out whole in one message;
    after that the message is edited at most once per `interval`, whatever the token rate."""

    def __init__(self, target: Target, interval: float, posted: Callable[[], None], clock: Clock, sleep: Sleep) -> None:
        self.target = target
        self.interval = interval
        self.latest = ""
        self.shown = ""
        self.message_id: int | None = None
        self.error: BaseException | None = None
        self._posted = posted
        self._clock = clock
        self._sleep = sleep
        self._last = 0.0
        self._wake = asyncio.Event()
        self._writing = False
        self._stopping = False
        self._task = asyncio.ensure_future(self._run())

    def update(self, text: str) -> None:
        self.latest = text
        self._wake.set()

    async def _run(self) -> None:
        try:
            await self._sleep(self.interval)
            while not self._stopping:
                await self._wake.wait()
                self._wake.clear()
                text = self.latest
                if not text or text == self.shown:
                    continue
                await self._write(text)
                if self._stopping:
                    return
                await self._sleep(self.interval)
        except Exception as exc:
            # Kept for the writer of the reply, which decides what a failure means.
            self.error = exc

    async def _write(self, text: str) -> None:
        self._writing = True
        try:
            if self.message_id is None:
                self.message_id = await self.target.post(text, first=True)
                self._posted()
            else:
                await self.target.edit(self.message_id, text)
        finally:
            self._writing = False
        self.shown = text
        self._last = self._clock()

    async def stop(self) -> None:
        """Stop writing. A write in flight finishes first: cancelling it could land it after the final edit."""
        self._stopping = True
        if not self._writing:
            self._task.cancel()
        await asyncio.wait([self._task])

    def abandon(self) -> None:
        """Last resort after the reply failed: no further writes, whatever state they are in."""
        self._task.cancel()

    async def pace(self) -> None:
        """Wait until the next write keeps to one per interval."""
        await self._sleep(max(0.0, self._last + self.interval - self._clock()))
