"""`botfleet run` on the console room, end to end: a real subprocess, the real openai SDK, a fake endpoint."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.openai_server import Delay, FakeOpenAI, Status

ROOT = Path(__file__).resolve().parent.parent

PERSONAS = {
    "skeptic": "id: skeptic\nname: The Skeptic\nprompt: You doubt things.\n"
    "triggers:\n  - mention: true\n  - command: true\n",
    "nerd": "id: nerd\nname: The Nerd\nprompt: You love numbers.\ntriggers:\n  - mention: true\n  - command: true\n"
    'reactions:\n  - keywords: [math]\n    emoji: "🤓"\n',
}


def write_fleet(tmp: Path, stream: bool) -> Path:
    (tmp / "personas").mkdir()
    for pid, text in PERSONAS.items():
        (tmp / "personas" / f"{pid}.yaml").write_text(text)
    cfg = tmp / "config.yaml"
    cfg.write_text(
        "personas_dir: personas\n"
        # retry_ratio 1: every call may retry once, so the scripted 429 and 500 are retried from the start.
        "llm: {provider: openai, model: fake-gpt, timeout_seconds: 1, retry_ratio: 1,"
        f" stream: {str(stream).lower()}}}\n"
        "fleet: {reply_delay_seconds: [0, 0]}\n"
    )
    return cfg


def persona_reply(body: dict[str, Any]) -> str:
    system = body["messages"][0]["content"]
    who = "skeptic" if "doubt" in system else "nerd"
    last = body["messages"][-1]["content"]
    return f"{who} says: re {last[-30:]}"


class Console:
    def __init__(self, proc: asyncio.subprocess.Process):
        self.proc = proc

    async def say(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((line + "\n").encode())
        await self.proc.stdin.drain()

    async def expect(self, prefix: str, within: float = 15) -> str:
        assert self.proc.stdout is not None
        async with asyncio.timeout(within):
            while True:
                line = (await self.proc.stdout.readline()).decode()
                if not line:
                    raise AssertionError(f"output ended before a line starting with {prefix!r}")
                if line.startswith(prefix):
                    return line.rstrip("\n")


async def start_console(cfg: Path, fake: FakeOpenAI) -> Console:
    env = {**os.environ, "OPENAI_BASE_URL": fake.base_url, "OPENAI_API_KEY": "test-key-not-real"}
    env.pop("REDIS_URL", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bots", "run", "--config", str(cfg), "--adapter", "console",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        cwd=ROOT, env=env,
    )  # fmt: skip
    return Console(proc)


@pytest.mark.parametrize("stream", [True, False])
async def test_console_fleet_answers_through_a_real_openai_client(tmp_path: Path, stream: bool) -> None:
    async with FakeOpenAI(reply=persona_reply) as fake:
        console = await start_console(write_fleet(tmp_path, stream), fake)
        proc = console.proc

        fake.script(Status.rate_limited(0.05))
        await console.say("hi @skeptic, is this a good deal?")
        line = await console.expect("[The Skeptic]")
        assert line.startswith("[The Skeptic] skeptic says: re ")

        fake.script(Status.server_error(500))
        await console.say("@nerd do the math")
        assert (await console.expect("[The Nerd")) == "[The Nerd reacted 🤓]"
        assert (await console.expect("[The Nerd]")).startswith("[The Nerd] nerd says:")

        fake.script(Delay(5))  # longer than timeout_seconds: this one reply is dropped
        await console.say("@skeptic still there?")
        await asyncio.sleep(1.5)
        await console.say("/ask nerd how many?")
        assert (await console.expect("[The Nerd]")).startswith("[The Nerd] nerd says:")

        await console.say("/personas")
        await console.expect("[botfleet] AI personas here:")
        assert proc.stdin is not None
        proc.stdin.close()
        async with asyncio.timeout(15):
            rc = await proc.wait()
        err = (await proc.stderr.read()).decode()  # type: ignore[union-attr]
        assert rc == 0, err
        assert "reply by skeptic dropped: timeout" in err
        assert "test-key-not-real" not in err

        # The prompt carries the persona, then the channel history with speaker names.
        last = fake.requests[-1]["messages"]
        assert last[0]["role"] == "system" and "You love numbers." in last[0]["content"]
        contents = [m["content"] for m in last[1:]]
        assert any("> you: hi @skeptic, is this a good deal?" in c for c in contents)  # quoted, not a "Name:" turn
        assert any(m["role"] == "assistant" and m["content"].startswith("nerd says") for m in last)
        assert all(r.get("stream", False) is stream for r in fake.requests)


async def test_piped_input_waits_for_replies_then_exits_0(tmp_path: Path) -> None:
    async with FakeOpenAI(reply=persona_reply) as fake:
        console = await start_console(write_fleet(tmp_path, True), fake)
        out, err = await asyncio.wait_for(console.proc.communicate(b"@skeptic one\n/panel two?\n"), timeout=30)
        assert console.proc.returncode == 0, err.decode()
        lines = out.decode().splitlines()
        assert any(line.startswith("[The Skeptic] skeptic says") for line in lines)
        assert any(line.startswith("[The Nerd] nerd says") for line in lines)


async def test_no_llm_configured_exits_2_with_help(tmp_path: Path) -> None:
    cfg = write_fleet(tmp_path, True)
    cfg.write_text(cfg.read_text().replace("provider: openai", "provider: auto"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    # Hide the local model as if it were not installed.
    env["PYTHONPATH"] = f"{tmp_path / 'nolocal'}{os.pathsep}{ROOT}"
    (tmp_path / "nolocal").mkdir()
    (tmp_path / "nolocal" / "sitecustomize.py").write_text(
        "import bots.llm.local\nbots.llm.local.local_available = lambda: False\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bots", "run", "--config", str(cfg),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        cwd=ROOT, env=env,
    )  # fmt: skip
    _, err = await proc.communicate()
    assert proc.returncode == 2
    assert "OPENAI_API_KEY" in err.decode() and ".[local]" in err.decode()


async def test_console_post_gets_a_cascade_each_comment_seeing_the_earlier_ones(tmp_path: Path) -> None:
    cfg = write_fleet(tmp_path, True)
    (tmp_path / "personas" / "stoic.yaml").write_text("id: stoic\nname: The Stoic\nprompt: You stay calm.\n")
    cfg.write_text(
        cfg.read_text().replace("reply_delay_seconds: [0, 0]", "reply_delay_seconds: [0, 0.3]")
        + "feeds:\n  console:\n    - {channel: console, comments: 3, window_seconds: 2, reactions: false}\n"
    )
    counter = iter(range(100))
    async with FakeOpenAI(reply=lambda body: f"comment number {next(counter)}") as fake:
        console = await start_console(cfg, fake)
        out, err = await asyncio.wait_for(console.proc.communicate(b"/post I adopted a cat today\n"), timeout=30)
        assert console.proc.returncode == 0, err.decode()
        comments = [line for line in out.decode().splitlines() if "comment number" in line]
        assert len(comments) == 3
        assert len({line.split("]")[0] for line in comments}) == 3  # three different personas
        prompts = ["\n".join(m["content"] for m in r["messages"]) for r in fake.requests]
        assert "you: I adopted a cat today" in prompts[0]
        assert "comment number 0" in prompts[1]
        assert "comment number 0" in prompts[2] and "comment number 1" in prompts[2]
