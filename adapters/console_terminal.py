"""The console room on a terminal: a prompt nothing writes over, and replies that appear as they are written.

prompt_toolkit keeps the line being typed at the bottom; everything the fleet prints goes through its
stdout proxy, which draws above the prompt. The proxy holds a partial line until its newline (the prompt
would paint over it), so a reply streams in whole screen lines: a line is printed as soon as the text
after it has started, wrapped to the terminal's width, continuation lines indented as in plain mode.

One reply streams at a time: while it does, everything else (another persona's reply, a notice) waits
and follows it, so an indented line always belongs to the speaker printed above it.
"""

from __future__ import annotations

import shutil
import sys
import textwrap
from collections.abc import AsyncIterator, Callable

from prompt_toolkit import PromptSession
from prompt_toolkit.patch_stdout import patch_stdout

from adapters.console import INDENT, framed

PROMPT = "you> "
HINT = "[botfleet] type a message (@name to address a persona), /help for commands, /post <text> to post; Ctrl-D quits"


def wrapped(text: str, width: int) -> list[str]:
    """Screen lines of framed text: each line folded to width, the folds indented like continuation lines."""
    out: list[str] = []
    for line in text.split("\n"):
        out.extend(textwrap.wrap(line, width, subsequent_indent=INDENT) or [""])
    return out


def width() -> int:
    # One column spare: a line exactly as wide as the terminal makes some terminals wrap early.
    return max(20, shutil.get_terminal_size((100, 24)).columns - 1)


class Screen:
    """What is printed above the prompt, and which reply (if any) is printing line by line."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self.write = write
        self._owner: object | None = None
        self._held: list[str] = []

    def say(self, block: str) -> None:
        """A whole block (a notice, a finished reply): now, or after the reply streaming at the moment."""
        if self._owner is None:
            self.write(block)
        else:
            self._held.append(block)

    def claim(self, owner: object) -> bool:
        if self._owner is None:
            self._owner = owner
        return self._owner is owner

    def stream(self, owner: object, lines: list[str]) -> None:
        if lines and self.claim(owner):
            self.write("\n".join(lines))

    def release(self, owner: object) -> None:
        if self._owner is not owner:
            return
        self._owner = None
        held, self._held = self._held, []
        for block in held:
            self.say(block)


class LiveReply:
    """One reply on the screen: lines printed while it grows, the rest when it ends."""

    def __init__(self, screen: Screen, speaker: str) -> None:
        self.screen = screen
        self.speaker = speaker
        self.shown = 0
        self.done = False

    def grow(self, text: str) -> None:
        if not self.screen.claim(self):
            return  # another reply is on screen: this one shows when it ends, or when the screen frees
        # The last screen line may still grow (or lose trailing space): it waits for the next one.
        lines = wrapped(framed(self.speaker, text.rstrip()), width())[:-1]
        self.screen.stream(self, lines[self.shown :])
        self.shown = max(self.shown, len(lines))

    def finish(self, text: str) -> None:
        lines = wrapped(framed(self.speaker, text), width())
        if self.shown:
            self.screen.stream(self, lines[self.shown :])
        else:
            self.screen.say("\n".join(lines))
        self.done = True
        self.screen.release(self)

    def close(self) -> None:
        """However the reply ended: lines already shown are marked as a reply that did not finish."""
        if not self.done and self.shown:
            self.screen.stream(self, [f"{INDENT}[cut off]"])
        self.done = True
        self.screen.release(self)


async def typed_lines(on_screen: Callable[[Callable[[str], None] | None], None]) -> AsyncIterator[str]:
    """Lines typed at the prompt until Ctrl-D or Ctrl-C. While it runs, everything written to stdout
    or stderr (the console's lines, warnings) goes above the prompt; on_screen gets the writer to use,
    then None when the prompt is gone."""
    session: PromptSession[str] = PromptSession()
    with patch_stdout():
        proxy = sys.stdout

        def write(text: str) -> None:
            proxy.write(text + "\n")
            proxy.flush()

        on_screen(write)
        write(HINT)
        try:
            while True:
                try:
                    yield await session.prompt_async(PROMPT)
                except (EOFError, KeyboardInterrupt):
                    return
        finally:
            on_screen(None)
