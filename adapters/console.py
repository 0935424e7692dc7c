"""A local room on stdin/stdout: try the fleet without any platform account.

Each input line is a message from `you` in channel `console`; `/cmd args` is a command and
`@name` mentions a persona. Persona messages print as `[Display Name] text`.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import AsyncIterator
from typing import TextIO

from bots.core.brain import IncompleteReply
from bots.core.events import Author, Command, Message, Notice, React, Reply, Sent
from bots.core.ports import FleetView
from bots.core.text import at_names
from bots.persona import Persona

YOU = Author(id="you", name="you", is_admin=True)


class ConsoleAdapter:
    platform = "console"
    text_limit = 100_000

    def __init__(self, stdin: TextIO | None = None, stdout: TextIO | None = None, channel: str = "console"):
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stdout
        self.channel = channel
        self.closed = asyncio.Event()
        self._fleet: FleetView | None = None
        self._reader: asyncio.Task[None] | None = None
        self._count = 0

    async def start(self, fleet: FleetView) -> None:
        self._fleet = fleet
        self._reader = asyncio.create_task(self._read())

    def accounts(self) -> list[str]:
        # Stdin belongs to this process alone: nothing to lease.
        return []

    async def connect(self, account: str) -> bool:
        return False

    async def disconnect(self, account: str) -> None:
        return None

    async def stop(self) -> None:
        if self._reader is not None and not self._reader.done():
            self._reader.cancel()
        self.closed.set()

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        lines: asyncio.Queue[str | None] = asyncio.Queue()

        def pump() -> None:
            # A thread, because stdin may be a tty, a pipe or a regular file; only a thread reads all three.
            try:
                for line in self.stdin:
                    loop.call_soon_threadsafe(lines.put_nowait, line)
            finally:
                loop.call_soon_threadsafe(lines.put_nowait, None)

        threading.Thread(target=pump, name="console-stdin", daemon=True).start()
        while (line := await lines.get()) is not None:
            line = line.strip()
            if line:
                await self.say(line)
        self.closed.set()

    def event_for(self, line: str) -> Message | Command:
        assert self._fleet is not None
        self._count += 1
        mid = str(self._count)
        is_post = line.startswith("/post ")
        if is_post:
            # A post to the console feed: the followers' cascade instead of trigger routing.
            line = line.removeprefix("/post ").strip()
        elif line.startswith("/"):
            name, _, args = line[1:].partition(" ")
            return Command(
                platform=self.platform,
                id=mid,
                channel=self.channel,
                author=YOU,
                name=name.lower(),
                args=args.strip(),
                channel_name=self.channel,
            )
        personas = self._fleet.personas
        mentions = frozenset(m for m in at_names(line) if m in personas)
        return Message(
            platform=self.platform,
            id=mid,
            channel=self.channel,
            author=YOU,
            text=line,
            mentions=mentions,
            channel_name=self.channel,
            is_post=is_post,
        )

    async def say(self, line: str) -> None:
        assert self._fleet is not None
        await self._fleet.dispatch(self.event_for(line))

    def _print(self, line: str) -> None:
        self.stdout.write(line + "\n")
        self.stdout.flush()

    async def deliver(self, reply: Reply, persona: Persona, snapshots: AsyncIterator[str]) -> Sent:
        text = ""
        try:
            async for snapshot in snapshots:
                text = snapshot
        except IncompleteReply as cut:
            if cut.partial:
                self._print(f"[{persona.name}] {cut.partial} [cut off]")
            return Sent(complete=False)
        self._count += 1
        mid = f"r{self._count}"
        self._print(f"[{persona.name}] {text}")
        return Sent(message_ids=(mid,), text=text)

    async def react(self, react: React, persona: Persona) -> None:
        self._print(f"[{persona.name} reacted {react.emoji}]")

    async def notify(self, notice: Notice) -> None:
        self._print(f"[botfleet] {notice.text}")
