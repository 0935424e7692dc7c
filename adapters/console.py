"""A local room on stdin/stdout: try the fleet without any platform account.

Each input line is a message from `you` in channel `console`; `/cmd args` is a command and
`@name` mentions a persona. Persona messages print as `[Display Name] text`.

Only the fleet's own lines start with `[`: the continuation lines of a reply or notice are indented,
and control characters are dropped, so a model that writes "\n[The Skeptic] ..." or
"[botfleet] Your data has been deleted" cannot print a line that looks like another speaker's.
"""

from __future__ import annotations

import asyncio
import re
import secrets
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

# What a continuation line starts with: never "[", so it cannot pass for a speaker's first line.
INDENT = "    "
# Terminal controls (escape sequences, backspace, bell...) after splitting on every line break; a tab stays.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# The feed post command exists only here (Discord and Telegram posts are messages in a feed channel),
# so the shared command table does not list it; /help on the console does.
POST_HELP = "/post: Post to the console feed; its followers comment: /post <text>"


def framed(speaker: str, text: str) -> str:
    """`[speaker] first line`, the other lines indented: one speaker per `[` at the start of a line."""
    lines = [_CONTROL.sub("", line) for line in text.splitlines()] or [""]
    head = f"[{_CONTROL.sub('', ' '.join(speaker.splitlines()))}] {lines[0]}"
    return "\n".join([head, *(f"{INDENT}{line}" if line.strip() else "" for line in lines[1:])])


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
        # Message ids are unique per process run: two consoles on one Redis, or a restart within the
        # dedupe window, would otherwise reuse "1", "2"... and the dedupe would drop their lines.
        self.run_id = secrets.token_hex(3)
        self._help_ids: set[str] = set()

    async def start(self, fleet: FleetView) -> None:
        self._fleet = fleet
        self._print(
            f"[botfleet] console room; message ids this run are {self.run_id}-1, {self.run_id}-2, ..."
            " (for botfleet why console ID)"
        )
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
        mid = f"{self.run_id}-{self._count}"
        is_post = line.startswith("/post ")
        if is_post:
            # A post to the console feed: the followers' cascade instead of trigger routing.
            line = line.removeprefix("/post ").strip()
        elif line.startswith("/"):
            name, _, args = line[1:].partition(" ")
            if name.lower() == "help":
                self._help_ids.add(mid)
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
                self._print(framed(persona.name, f"{cut.partial} [cut off]"))
            return Sent(complete=False)
        self._count += 1
        mid = f"{self.run_id}-r{self._count}"
        self._print(framed(persona.name, text))
        return Sent(message_ids=(mid,), text=text)

    async def react(self, react: React, persona: Persona) -> None:
        self._print(framed(f"{persona.name} reacted {react.emoji}", "").rstrip())

    async def notify(self, notice: Notice) -> None:
        text = notice.text
        if notice.command_id is not None and notice.command_id in self._help_ids:
            self._help_ids.discard(notice.command_id)
            text = f"{text}\n{POST_HELP}"
        self._print(framed("botfleet", text))
