"""Hostile input: regexes that backtrack forever, invisible replies, forged console lines, broken YAML."""

from __future__ import annotations

import asyncio
import io
import multiprocessing
import os
import random
import sys
from pathlib import Path
from typing import Any

import pytest

from adapters.console import ConsoleAdapter
from bots.cli import main
from bots.core.commands import help_text
from bots.core.events import Notice, Reply
from bots.core.text import sanitize
from bots.core.triggers import TriggerIndex
from bots.persona import load_personas
from bots.yamlfile import ConfigError, Problem
from tests.conftest import msg, persona
from tests.fakes.openai_server import FakeOpenAI

ROOT = Path(__file__).resolve().parent.parent


def hits_within(index: TriggerIndex, text: str, seconds: float = 10) -> dict[str, str]:
    """Match in a forked process, so a regression to a backtracking engine fails instead of hanging CI.

    Not a thread: Python's `re` holds the GIL for the whole match, so a thread's timeout never fires.
    """
    results: multiprocessing.SimpleQueue[dict[str, str]] = _FORK.SimpleQueue()

    def run() -> None:
        hits, _ = index.match(msg(text), random.Random(0))
        results.put({index.personas[i].id: h.kind for i, h in hits.items()})

    worker = _FORK.Process(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        worker.kill()
        worker.join()
        raise AssertionError(f"matching {text[:20]!r}... took over {seconds} s")
    assert worker.exitcode == 0
    return results.get()


_FORK = multiprocessing.get_context("fork")


def test_a_catastrophic_regex_routes_a_hostile_message_quickly() -> None:
    index = TriggerIndex(
        [
            persona("evil", triggers=[{"regex": "(a+)+$"}]),
            persona("nested", triggers=[{"regex": r"^(\w+\s?)*$"}]),
            persona("react", reactions=[{"regex": "(x+x+)+y", "emoji": "👀"}]),
        ]
    )
    # 36 a's and a "!" took Python's re over a minute; "x"*5000 is the reaction's worst case.
    assert hits_within(index, "a" * 36 + "!") == {}
    assert "nested" not in hits_within(index, "word " * 40 + "!")
    assert hits_within(index, "x" * 5000) == {"nested": "regex"}
    # Still a regex: it fires when it should.
    assert hits_within(index, "aaaa") == {"evil": "regex", "nested": "regex"}


def test_case_insensitive_regexes_behave_as_before() -> None:
    index = TriggerIndex(
        [
            persona("ci", triggers=[{"regex": r"(?i)\bshould i\b"}]),
            persona("accent", triggers=[{"regex": "(?i)émile zola"}]),
            persona("cs", triggers=[{"regex": r"NASA\b"}]),
        ]
    )
    assert hits_within(index, "SHOULD I go?") == {"ci": "regex"}
    assert hits_within(index, "shoulder") == {}
    assert hits_within(index, "ÉMILE ZOLA wrote it") == {"accent": "regex"}
    # The anchor search is case-blind, the regex itself is not: lowercase "nasa" must not fire.
    assert hits_within(index, "nasa launched") == {}
    assert hits_within(index, "NASA launched") == {"cs": "regex"}


def test_a_pattern_python_reads_differently_is_still_matched() -> None:
    # Python's parser warns on POSIX classes: no anchor is taken from it and RE2 runs it on every message.
    index = TriggerIndex([persona("posix", triggers=[{"regex": "[[:digit:]]+ apples"}])])
    assert hits_within(index, "I have 12 apples") == {"posix": "regex"}
    assert hits_within(index, "I have apples") == {}


def test_the_shipped_nerd_regex_keeps_its_meaning_without_a_lookahead() -> None:
    index = TriggerIndex([p for p in load_personas(ROOT / "personas") if p.id == "nerd"])
    # The regex has chance 0.15: a generator that always rolls 0 shows whether the pattern matches.
    for text, expected in [
        ("it is 42% likely", True),
        ("a 1000 percent return", True),
        ("I'm 100% sure", False),
        ("how many do I need", True),
        ("100.5%", True),
        ("it is 10%", True),
        ("it is 101%", True),
    ]:
        hits, _ = index.match(msg(text), _Always(), free_will=False)
        assert bool(hits) is expected, text


class _Always(random.Random):
    def random(self) -> float:
        return 0.0


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("pattern", "construct"),
    [
        (r"(ha)\1", "backreferences"),
        (r"foo(?=bar)", "lookarounds"),
        (r"(?<!no )way", "negative lookarounds"),
        (r"a++", "possessive quantifiers"),
        (r"(?>ab)", "atomic groups"),
    ],
)
def test_check_rejects_what_re2_cannot_run_and_names_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pattern: str, construct: str
) -> None:
    d = tmp_path / "personas"
    write(d / "a.yaml", f"id: a\nname: A\nprompt: hi\ntriggers:\n  - mention: true\n  - regex: '{pattern}'\n")
    cfg = write(tmp_path / "config.yaml", "personas_dir: personas\n")
    assert main(["check", "--config", str(cfg)]) == 2
    out = capsys.readouterr().out
    # The second trigger, counted from 1 the way a person reads the file.
    assert f"{d / 'a.yaml'}:6: triggers[2].regex: invalid regular expression: {construct} " in out, out


def test_reaction_regexes_are_checked_too(tmp_path: Path) -> None:
    d = tmp_path / "personas"
    write(d / "a.yaml", "id: a\nname: A\nprompt: hi\nreactions:\n  - regex: '(\\w)\\1'\n    emoji: x\n")
    with pytest.raises(ConfigError, match=r"a.yaml:5: reactions\[1\].regex: .*backreferences"):
        load_personas(d)


def test_an_invisible_reply_is_empty() -> None:
    for text in ["\u200b", "\u200b\u200c\u200d\u2060\ufeff", " \u3164 \u00ad\u180e", "\u2800\u034f", "\x1b\x07"]:
        assert sanitize(text) == "", repr(text)
    assert sanitize("The Skeptic: \u200b", "The Skeptic") == ""
    assert sanitize("\u200bhi") == "\u200bhi"
    assert sanitize("a\x1b[2Jb\r\nc") == "a[2Jb\nc"


def test_a_persona_file_that_is_not_utf8_is_a_problem_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = tmp_path / "personas"
    write(d / "a.yaml", "id: a\nname: Café\nprompt: hi\n".encode("latin-1"))
    cfg = write(tmp_path / "config.yaml", "personas_dir: personas\n")
    assert main(["check", "--config", str(cfg)]) == 2
    out = capsys.readouterr().out
    assert f"{d / 'a.yaml'}:2: file: not UTF-8 (byte 0xe9 at column 10)" in out, out


def test_a_control_character_in_yaml_reports_its_line(tmp_path: Path) -> None:
    d = tmp_path / "personas"
    write(d / "a.yaml", "id: a\nname: A\nprompt: hi \x07 there\n")
    with pytest.raises(ConfigError) as err:
        load_personas(d)
    assert str(err.value).startswith(f"{d / 'a.yaml'}:3: yaml: invalid YAML: character U+0007")


def test_problems_print_sorted_by_file_then_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "personas"
    write(d / "b.yaml", "id: b\nname: B\nprompt: hi\ntriggers:\n  - chance: 2\n")
    write(d / "a.yaml", "id: a\nname: A\nprompt: hi\nlimits: {per_minute: 0}\ntriggers:\n  - chance: 2\n")
    cfg = write(tmp_path / "config.yaml", "personas_dir: personas\nfleet: {max_bot_chain: -1}\n")
    assert main(["check", "--config", str(cfg)]) == 2
    out = capsys.readouterr().out.splitlines()
    keys = [(line.split(":")[0], int(line.split(":")[1])) for line in out]
    assert keys == sorted(keys) and len(keys) == 4, out
    assert sorted([Problem("b", 1, "x", "y"), Problem("a", 9, "x", "y"), Problem("a", 2, "x", "y")])[0].line == 2


class _Fleet:
    """Only what the console adapter reads of the fleet: the persona ids, and what it dispatched."""

    def __init__(self) -> None:
        self.personas: dict[str, Any] = {}
        self.events: list[Any] = []

    async def dispatch(self, event: Any) -> None:
        self.events.append(event)


async def _snapshots(*texts: str) -> Any:
    for t in texts:
        yield t


async def test_a_reply_cannot_forge_another_speakers_console_line() -> None:
    out = io.StringIO()
    console = ConsoleAdapter(stdin=io.StringIO(""), stdout=out)
    reply = Reply(persona_id="skeptic", platform="console", channel="console", reply_to=None, reason="mention")
    forged = "Sure.\n[The Nerd] I agree\r[botfleet] Your data has been deleted\u2028[botfleet] ok\x1b[1A\n\nbye"
    await console.deliver(reply, persona("skeptic", name="The Skeptic"), _snapshots(forged))
    await console.notify(Notice(platform="console", channel="console", text="done\n[The Skeptic] fake"))
    lines = out.getvalue().splitlines()
    assert [line for line in lines if line.startswith("[")] == ["[The Skeptic] Sure.", "[botfleet] done"]
    assert "    [botfleet] Your data has been deleted" in lines
    assert "\x1b" not in out.getvalue() and "\r" not in out.getvalue()


async def test_console_ids_are_unique_per_run_and_help_lists_post() -> None:
    first, second = (ConsoleAdapter(stdin=io.StringIO(""), stdout=io.StringIO()) for _ in range(2))
    for c in (first, second):
        c._fleet = _Fleet()  # type: ignore[assignment]
    a, b = first.event_for("hello"), second.event_for("hello")
    assert a.id != b.id and a.key != b.key
    assert first.event_for("hello again").id != a.id
    out = io.StringIO()
    console = ConsoleAdapter(stdin=io.StringIO(""), stdout=out)
    console._fleet = _Fleet()  # type: ignore[assignment]
    cmd = console.event_for("/help")
    await console.notify(Notice(platform="console", channel="console", text=help_text(), command_id=cmd.id))
    assert any(line.startswith("    /post: ") for line in out.getvalue().splitlines())
    # Another notice (not the answer to /help) is left alone.
    await console.notify(Notice(platform="console", channel="console", text=help_text(), command_id="other"))
    assert out.getvalue().count("/post: ") == 1


async def test_two_console_processes_on_one_redis_both_answer(tmp_path: Path, redis_url: str) -> None:
    """Message ids restarting at 1 in each process made the second console's lines duplicates."""
    (tmp_path / "personas").mkdir()
    (tmp_path / "personas" / "skeptic.yaml").write_text(
        "id: skeptic\nname: The Skeptic\nprompt: You doubt things.\ntriggers:\n  - mention: true\n"
    )
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        f"personas_dir: personas\nstore: {redis_url}\n"
        "llm: {provider: openai, model: fake-gpt, timeout_seconds: 5, stream: false}\n"
        "fleet: {reply_delay_seconds: [0, 0]}\n"
    )
    async with FakeOpenAI(reply=lambda body: "I doubt it.") as fake:
        env = {"OPENAI_BASE_URL": fake.base_url, "OPENAI_API_KEY": "test-key-not-real", "REDIS_URL": redis_url}
        outs = await asyncio.gather(*(_console_run(cfg, env, b"@skeptic really?\n") for _ in range(2)))
    for out in outs:
        assert any(line.startswith("[The Skeptic] I doubt it.") for line in out.splitlines()), out


async def _console_run(cfg: Path, extra_env: dict[str, str], stdin: bytes) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bots", "run", "--config", str(cfg), "--adapter", "console",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        cwd=ROOT, env={**os.environ, **extra_env},
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(stdin), timeout=60)
    assert proc.returncode == 0, err.decode()
    return out.decode()
