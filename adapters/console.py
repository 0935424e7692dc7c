"""A local room on stdin/stdout: try the fleet without any platform account.

Each input line is a message from `you` in channel `console`; `/cmd args` is a command and
`@name` mentions a persona. Persona messages print as `[Display Name] text`.

On a terminal (stdin and stdout both ttys) the room has a prompt that nothing writes over, and
replies appear line by line as they are written (adapters.console_terminal); piped input is read
line by line and each reply printed when it is finished, as scripts and tests expect.

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
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, TextIO

from bots.core.brain import IncompleteReply
from bots.core.events import Author, Command, Message, Notice, React, Reply, Sent
from bots.core.ports import FleetView
from bots.core.text import at_names
from bots.persona import Persona

if TYPE_CHECKING:
    from adapters.console_terminal import Screen

YOU = Author(id="you", name="you", is_admin=True)

# What a continuation line starts with: never "[", so it cannot pass for a speaker's first line.
INDENT = "    "
# Terminal controls (escape sequences, backspace, bell...) after splitting on every line break; a tab stays.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# The feed post command exists only here (Discord and Telegram posts are messages in a feed channel),
# so the shared command table does not list it; /help on the console does.
POST_HELP = "/post: Post to the console feed; its followers comment: /post <text>"
POST_USAGE = "Usage: /post <text>"


def framed(speaker: str, text: str) -> str:
    """`[speaker] first line`, the other lines indented: one speaker per `[` at the start of a line."""
    lines = [_CONTROL.sub("", line) for line in text.splitlines()] or [""]
    head = f"[{_CONTROL.sub('', ' '.join(speaker.splitlines()))}] {lines[0]}"
    return "\n".join([head, *(f"{INDENT}{line}" if line.strip() else "" for line in lines[1:])])


class ConsoleAdapter:
    platform = "console"
    text_limit = 100_000

    def __init__(
        self,
        stdin: TextIO | None = None,
        stdout: TextIO | None = None,
        channel: str = "console",
        *,
        interactive: bool | None = None,
    ):
        if interactive is None:
            interactive = stdin is None and stdout is None and sys.stdin.isatty() and sys.stdout.isatty()
        # A person at a terminal, rather than a pipe: the prompt, and replies streamed.
        self.interactive = interactive
        self._screen: Screen | None = None
        self._above_prompt: Callable[[str], None] | None = None
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
        # Events handed to the fleet and not decided yet, oldest first (see `hand_over`).
        self._handing: list[asyncio.Task[None]] = []
        self._barrier: asyncio.Task[None] | None = None

    async def start(self, fleet: FleetView) -> None:
        self._fleet = fleet
        self._print(
            f"[botfleet] console room; message ids this run are {self.run_id}-1, {self.run_id}-2, ..."
            " (for botfleet why console ID)"
        )
        if self.interactive:
            # Only a terminal session pays for importing prompt_toolkit (a quarter of a second).
            from adapters.console_terminal import Screen

            self._screen = Screen(self._write)
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
        for task in self._handing:
            task.cancel()
        self.closed.set()

    async def _read(self) -> None:
        if self.interactive:
            await self._prompt()
        else:
            await self._pump()
        # Piped input ends when every line has been decided (its replies are the fleet's to finish).
        await self.handed_over()
        self.closed.set()

    def hand_over(self, event: Message | Command) -> None:
        """Give the fleet an event without waiting for the decisions on earlier ones, so lines that
        arrive together are decided together (one Redis call for all of them). Order holds: messages
        reach the fleet's admission step in the order they were typed, and a command waits for
        everything before it, and everything after it waits for the command (a /mute or /optout
        must apply to the very next line)."""
        assert self._fleet is not None
        wait: list[asyncio.Task[None]] = []
        if isinstance(event, Command):
            wait = list(self._handing)
        elif self._barrier is not None and not self._barrier.done():
            wait = [self._barrier]
        task = asyncio.ensure_future(self._dispatch_after(wait, event))
        if isinstance(event, Command):
            self._barrier = task
        self._handing.append(task)
        task.add_done_callback(self._handing.remove)

    async def _dispatch_after(self, wait: list[asyncio.Task[None]], event: Message | Command) -> None:
        if wait:
            await asyncio.wait(wait)
        assert self._fleet is not None
        await self._fleet.dispatch(event)

    async def handed_over(self) -> None:
        """Wait until every event handed over so far has been decided."""
        while self._handing:
            await asyncio.wait(list(self._handing))

    async def _prompt(self) -> None:
        from adapters.console_terminal import typed_lines  # prompt_toolkit: see start()

        async for line in typed_lines(self._set_above_prompt):
            if line.strip():
                await self.say(line.strip())

    def _set_above_prompt(self, write: Callable[[str], None] | None) -> None:
        self._above_prompt = write

    async def _pump(self) -> None:
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

    def event_for(self, line: str) -> Message | Command:
        assert self._fleet is not None
        self._count += 1
        mid = f"{self.run_id}-{self._count}"
        name, _, args = line[1:].partition(" ") if line.startswith("/") else ("", "", "")
        is_post = name.lower() == "post"
        if is_post:
            # A post to the console feed: the followers' cascade instead of trigger routing.
            line = args.strip()
        elif line.startswith("/"):
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
        event = self.event_for(line)
        if isinstance(event, Message) and event.is_post and not event.text:
            # The shared command table has no /post, so the fleet would call it an unknown command.
            self._print(framed("botfleet", POST_USAGE))
            return
        self.hand_over(event)

    def _print(self, line: str) -> None:
        if self._screen is not None:
            self._screen.say(line)
        else:
            self._write(line)

    def _write(self, text: str) -> None:
        if self._above_prompt is not None:
            self._above_prompt(text)
            return
        self.stdout.write(text + "\n")
        self.stdout.flush()

    async def deliver(self, reply: Reply, persona: Persona, snapshots: AsyncIterator[str]) -> Sent:
        if self._screen is not None:
            return await self._deliver_live(self._screen, persona, snapshots)
        text = ""
        try:
            async for snapshot in snapshots:
                text = snapshot
        except IncompleteReply as cut:
            if cut.partial:
                self._print(framed(persona.name, f"{cut.partial} [cut off]"))
            return Sent(complete=False)
        self._print(framed(persona.name, text))
        return self._sent(text)

    def _sent(self, text: str) -> Sent:
        self._count += 1
        return Sent(message_ids=(f"{self.run_id}-r{self._count}",), text=text)

    async def _deliver_live(self, screen: Screen, persona: Persona, snapshots: AsyncIterator[str]) -> Sent:
        from adapters.console_terminal import LiveReply  # loaded by start() already

        live = LiveReply(screen, persona.name)
        text = ""
        try:
            async for snapshot in snapshots:
                text = snapshot
                live.grow(text)
            live.finish(text)
        except IncompleteReply as cut:
            if cut.partial:
                live.finish(f"{cut.partial} [cut off]")
            return Sent(complete=False)
        finally:
            live.close()
        return self._sent(text)

    async def react(self, react: React, persona: Persona) -> None:
        self._print(framed(f"{persona.name} reacted {react.emoji}", "").rstrip())

    async def notify(self, notice: Notice) -> None:
        text = notice.text
        if notice.command_id is not None and notice.command_id in self._help_ids:
            self._help_ids.discard(notice.command_id)
            text = f"{text}\n{POST_HELP}"
        self._print(framed("botfleet", text))
