"""Issue 12.12 and 12.13: silence is explained (in the core, for every platform), and the console on a
terminal keeps log lines out of the chat, shows a prompt and a hint, and never writes over typing."""

from __future__ import annotations

import asyncio
import fcntl
import io
import os
import re
import struct
import sys
import termios
from pathlib import Path

from adapters.console import INDENT, ConsoleAdapter
from adapters.console_terminal import HINT, PROMPT, LiveReply, Screen
from bots.core.events import Author, Command, Message, Notice, Reply
from bots.core.plan import Plan
from tests.conftest import HUMAN, make_fleet, msg, persona
from tests.fakes.openai_server import FakeOpenAI
from tests.test_console_e2e import ROOT, persona_reply, write_fleet

BOB = Author(id="u2", name="bob")


def cmd(name: str, args: str = "", author: Author = HUMAN, **kw: object) -> Command:
    msg.counter += 1  # type: ignore[attr-defined]
    return Command("test", f"c{msg.counter}", "general", author, name, args, **kw)  # type: ignore[arg-type,attr-defined]


def notices(plan: Plan) -> list[Notice]:
    return [a for a in plan.actions if isinstance(a, Notice)]


def replies(plan: Plan) -> list[str]:
    return [a.persona_id for a in plan.actions if isinstance(a, Reply)]


NERD = persona("nerd", name="The Nerd", limits={"per_user_per_minute": 1})
SKEPTIC = persona("skeptic", name="The Skeptic")


async def test_a_rate_limited_mention_is_told_once_a_minute_per_person() -> None:
    fleet, _, clock = make_fleet([NERD, SKEPTIC])
    assert replies(await fleet.handle(msg("@nerd what is 2+2"))) == ["nerd"]
    clock.advance(41)
    plan = await fleet.handle(msg("@nerd and now?"))
    assert replies(plan) == []
    [told] = notices(plan)
    assert told.text == "The Nerd is busy here; try again in 19 s."
    assert told.private and told.to_user == HUMAN.id and told.reply_to == plan.event.id
    # Once a minute per person: the next miss is silent again, another person is still told.
    clock.advance(1)
    assert notices(await fleet.handle(msg("@nerd hello?"))) == []
    assert [n.to_user for n in notices(await fleet.handle(msg("@nerd", author=BOB)))] == []  # bob may ask: no skip
    clock.advance(1)
    bob_again = await fleet.handle(msg("@nerd again", author=BOB))
    assert [n.to_user for n in notices(bob_again)] == [BOB.id]
    clock.advance(60)
    assert len(notices(await fleet.handle(msg("@nerd hello?")))) == 0  # the limit let it answer
    clock.advance(1)
    assert len(notices(await fleet.handle(msg("@nerd once more")))) == 1


async def test_a_muted_mention_says_so_and_an_unnamed_persona_stays_silent() -> None:
    chatty = persona("chatty", triggers=[{"keywords": ["hello"]}], limits={"cooldown_seconds": 60})
    fleet, _, _ = make_fleet([NERD, chatty])
    await fleet.handle(cmd("mute", "nerd", author=Author("u9", "mod", is_admin=True)))
    plan = await fleet.handle(msg("hello @nerd"))
    assert [n.text for n in notices(plan)] == ["The Nerd is muted in this channel."]
    # A keyword hit that is rate-limited was not addressed by name: no notice for it.
    fleet2, _, _ = make_fleet([chatty])
    await fleet2.handle(msg("hello"))
    assert notices(await fleet2.handle(msg("hello", author=BOB))) == []


async def test_persona_messages_never_get_a_notice() -> None:
    fleet, _, _ = make_fleet([NERD, SKEPTIC], max_bot_chain=0)
    bot = Author(id="persona:skeptic", name="The Skeptic", is_bot=True, persona_id="skeptic")
    plan = await fleet.handle(msg("@nerd what do you think?", author=bot))
    assert replies(plan) == [] and notices(plan) == []


async def test_an_unknown_command_gets_a_one_line_error_with_the_closest_match() -> None:
    fleet, _, _ = make_fleet([NERD, SKEPTIC])
    [typo] = notices(await fleet.handle(cmd("pannel", "is a bakery a good idea?")))
    assert typo.text == "Unknown command /pannel; did you mean /panel?" and typo.private
    [unknown] = notices(await fleet.handle(cmd("frobnicate")))
    assert unknown.text == "Unknown command /frobnicate; /help lists the commands."


async def test_ask_with_a_name_that_is_no_persona_says_so_and_a_plain_question_still_asks() -> None:
    fleet, _, _ = make_fleet([NERD, SKEPTIC])
    plan = await fleet.handle(cmd("ask", "@nobody what?"))
    assert replies(plan) == []
    assert [n.text for n in notices(plan)] == ["No persona called 'nobody'; /personas lists them."]
    plan = await fleet.handle(cmd("ask", "skeptik is this a good deal?"))
    assert replies(plan) == []
    assert [n.text for n in notices(plan)] == ["No persona called 'skeptik'; did you mean The Skeptic (@skeptic)?"]
    # The first word of a question is not a name: the best match answers, as before.
    plan = await fleet.handle(cmd("ask", "should I quit my job?"))
    assert len(replies(plan)) == 1 and notices(plan) == []
    # A first word that is neither a persona nor a question word may have been meant as one: the best
    # match answers, and the person is told who and why.
    plan = await fleet.handle(cmd("ask", "nobody what?", author=Author("u7", "Cy")))
    [who] = replies(plan)
    answered = fleet.personas[who].name
    assert [n.text for n in notices(plan)] == [
        f"No persona called 'nobody', so the best match answers: {answered}. /personas lists them."
    ]
    assert replies(await fleet.handle(cmd("ask", "nerd what is 2+2?", author=BOB))) == ["nerd"]


async def test_mute_of_a_persona_that_does_not_exist_names_the_closest() -> None:
    fleet, _, _ = make_fleet([NERD, SKEPTIC])
    plan = await fleet.handle(cmd("mute", "nerds", author=Author("u9", "mod", is_admin=True)))
    assert [n.text for n in notices(plan)] == ["No persona called 'nerds'; did you mean The Nerd (@nerd)?"]


async def test_post_without_text_says_how_to_post_and_any_case_of_post_posts() -> None:
    fleet, _, _ = make_fleet([NERD, SKEPTIC])
    out = io.StringIO()
    console = ConsoleAdapter(stdin=io.StringIO(""), stdout=out)
    console._fleet = fleet
    # /post is the console's own command, not in the shared table: bare, the fleet called it unknown.
    await console.say("/post")
    assert out.getvalue() == "[botfleet] Usage: /post <text>\n"
    posted = console.event_for("/POST I adopted a cat!")
    assert isinstance(posted, Message) and posted.is_post and posted.text == "I adopted a cat!"
    assert isinstance(console.event_for("/postcard"), Command)


# --- the console on a terminal -------------------------------------------------------------------

CSI = re.compile(r"\x1b(\[[0-9;?]*[ -/]*[@-~]|[()][0-9A-B]|[=>78])")


class Terminal:
    """A real pseudo-terminal running `botfleet run --adapter console`: what a person sees and types."""

    def __init__(self, cfg: Path, fake: FakeOpenAI, adapters: tuple[str, ...] = ("--adapter", "console")) -> None:
        self.cfg = cfg
        self.fake = fake
        self.adapters = adapters
        self.raw = b""
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        self._slave = slave
        self.proc: asyncio.subprocess.Process | None = None
        self._more = asyncio.Event()

    async def start(self) -> None:
        env = {**os.environ, "OPENAI_BASE_URL": self.fake.base_url, "OPENAI_API_KEY": "test-key-not-real"}
        env.update(TERM="xterm", PROMPT_TOOLKIT_NO_CPR="1")
        env.pop("REDIS_URL", None)
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bots", "run", "--config", str(self.cfg), *self.adapters,
            stdin=self._slave, stdout=self._slave, stderr=self._slave, cwd=ROOT, env=env, start_new_session=True,
        )  # fmt: skip
        os.close(self._slave)
        asyncio.get_running_loop().add_reader(self.master, self._read)

    def _read(self) -> None:
        try:
            self.raw += os.read(self.master, 65536)
            self._more.set()
        except OSError:  # the child closed the terminal
            asyncio.get_running_loop().remove_reader(self.master)

    @property
    def screen_text(self) -> str:
        """What was written, without the terminal's control sequences."""
        return CSI.sub("", self.raw.decode("utf-8", "replace")).replace("\r", "")

    async def wait_for(self, text: str, after: int = 0, within: float = 20) -> int:
        """Where text shows (in screen_text) after the given position."""
        try:
            async with asyncio.timeout(within):
                while (at := self.screen_text.find(text, after)) < 0:
                    self._more.clear()
                    await self._more.wait()
        except TimeoutError:
            raise AssertionError(f"{text!r} did not show; the terminal shows:\n{self.screen_text}") from None
        return at

    async def type(self, text: str) -> None:
        for ch in text:
            os.write(self.master, ch.encode())
            await asyncio.sleep(0.005)

    async def close(self) -> int:
        assert self.proc is not None
        os.write(self.master, b"\x04")  # Ctrl-D at an empty prompt: the end of the session
        try:
            async with asyncio.timeout(90):
                rc = await self.proc.wait()
        except TimeoutError:
            log = self.cfg.parent / "botfleet.log"
            logged = log.read_text() if log.exists() else "(no log file)"
            raise AssertionError(
                f"no exit after Ctrl-D; the terminal shows:\n{self.screen_text}\nlog:\n{logged}"
            ) from None
        await asyncio.sleep(0.1)
        asyncio.get_running_loop().remove_reader(self.master)
        os.close(self.master)
        return rc


async def test_on_a_terminal_the_console_has_a_prompt_a_hint_and_no_log_lines(tmp_path: Path) -> None:
    async with FakeOpenAI(reply=persona_reply) as fake:
        term = Terminal(write_fleet(tmp_path, stream=True), fake)
        await term.start()
        log_file = tmp_path / "botfleet.log"
        await term.wait_for(f"botfleet: log lines go to {log_file}")
        await term.wait_for(HINT)
        prompt = await term.wait_for(PROMPT.strip())

        await term.type("hi @skeptic should I quit my job?\r")
        echoed = await term.wait_for("hi @skeptic should I quit my job?", prompt)
        # Half a line typed while the reply is on its way: it is drawn again below the reply, not lost.
        await term.type("half typed")
        answered = await term.wait_for("[The Skeptic] skeptic says: re ", echoed)
        await term.wait_for("half typed", answered)
        await term.type("\x15")  # Ctrl-U: clear the half line

        await term.type("/frobnicate\r")
        await term.wait_for("[botfleet] Unknown command /frobnicate; /help lists the commands.", answered)
        assert await term.close() == 0

    seen = term.screen_text
    assert " INFO " not in seen, seen
    assert "test-key-not-real" not in seen
    logged = log_file.read_text()
    assert "INFO botfleet.decision: decision console:" in logged
    assert "INFO botfleet: fleet running: 2 personas on console" in logged


def test_a_reply_streams_line_by_line_and_other_lines_wait_for_it() -> None:
    printed: list[str] = []
    screen = Screen(printed.append)
    nerd = LiveReply(screen, "The Nerd")
    skeptic = LiveReply(screen, "The Skeptic")
    words = "one two three four five six seven eight nine ten " * 8
    nerd.grow(words[:30])
    assert printed == []  # the first screen line may still grow
    nerd.grow(words[:200])
    first = printed[0]
    assert first.startswith("[The Nerd] one two") and len(printed) == 1
    # Meanwhile another persona starts and a notice arrives: both wait for the Nerd's last line.
    skeptic.grow("I doubt it.\nReally.")
    screen.say("[botfleet] a notice")
    assert len(printed) == 1
    nerd.finish(words.strip())
    skeptic.grow("I doubt it.\nReally. Truly.")
    skeptic.finish("I doubt it.\nReally. Truly.")
    shown = "\n".join(printed).split("\n")
    assert shown[0].startswith("[The Nerd] one two") and all(line.startswith(INDENT) for line in shown[1:-3])
    assert " ".join(line.strip() for line in shown[:-3]).removeprefix("[The Nerd] ") == words.strip()
    assert shown[-3:] == ["[botfleet] a notice", "[The Skeptic] I doubt it.", f"{INDENT}Really. Truly."]


def test_a_reply_that_stops_half_way_is_marked_and_frees_the_screen() -> None:
    printed: list[str] = []
    screen = Screen(printed.append)
    nerd = LiveReply(screen, "The Nerd")
    nerd.grow("line one\nline two\nline")
    screen.say("[botfleet] waiting")
    nerd.close()
    assert printed == ["[The Nerd] line one\n    line two", f"{INDENT}[cut off]", "[botfleet] waiting"]
