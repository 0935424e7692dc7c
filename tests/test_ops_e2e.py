"""Operating a real `botfleet run` process on the console room with a fake OpenAI endpoint: hot reload
(SIGHUP and `botfleet reload`), `botfleet why`, /metrics, JSON logs without secrets, and SIGTERM
with replies in flight."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import urllib.request
from pathlib import Path
from typing import Any

from tests.fakes.openai_server import Delay, FakeOpenAI

ROOT = Path(__file__).resolve().parent.parent

API_KEY = "sk-e2e-key-1234567890"
DISCORD_TOKEN = "discord-e2e-token-XYZ987"
PROXY_PASSWORD = "proxy-pass-424242"


def persona_yaml(pid: str, name: str, trait: str) -> str:
    return f"id: {pid}\nname: {name}\nprompt: You {trait}.\ntriggers:\n  - mention: true\n  - command: true\n"


def persona_reply(body: dict[str, Any]) -> str:
    system = body["messages"][0]["content"]
    for pid, trait in (("skeptic", "doubt"), ("nerd", "count"), ("optimist", "hope")):
        if f"You {trait}" in system:
            return f"{pid} says hi"
    return "someone says hi"


def write_fleet(tmp: Path, port: int, shutdown_seconds: float = 10) -> Path:
    (tmp / "personas").mkdir()
    (tmp / "personas" / "skeptic.yaml").write_text(persona_yaml("skeptic", "The Skeptic", "doubt things"))
    (tmp / "personas" / "nerd.yaml").write_text(persona_yaml("nerd", "The Nerd", "count things"))
    cfg = tmp / "config.yaml"
    cfg.write_text(
        "personas_dir: personas\n"
        "llm: {provider: openai, model: fake-gpt, timeout_seconds: 30}\n"
        f"metrics: {{port: {port}}}\n"
        "logging: {json: true}\n"
        f"fleet: {{reply_delay_seconds: [0, 0], shutdown_seconds: {shutdown_seconds}}}\n"
        "adapters:\n  discord:\n    token: ${E2E_DISCORD_TOKEN}\n"
    )
    return cfg


class Running:
    """A `botfleet run` subprocess: write lines to its console, read its stdout and (JSON) stderr."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.err: list[str] = []
        self._pump = asyncio.ensure_future(self._read_err())

    async def _read_err(self) -> None:
        assert self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            self.err.append(line.decode().rstrip("\n"))

    async def say(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((line + "\n").encode())
        await self.proc.stdin.drain()

    async def expect(self, prefix: str, within: float = 10) -> str:
        assert self.proc.stdout is not None
        async with asyncio.timeout(within):
            while True:
                line = (await self.proc.stdout.readline()).decode()
                if not line:
                    raise AssertionError(f"stdout ended before {prefix!r}; stderr:\n" + "\n".join(self.err))
                if line.startswith(prefix):
                    return line.rstrip("\n")

    async def expect_err(self, part: str, within: float = 10) -> str:
        async with asyncio.timeout(within):
            while True:
                for line in self.err:
                    if part in line:
                        return line
                if self._pump.done():
                    raise AssertionError(f"stderr ended before {part!r}:\n" + "\n".join(self.err))
                await asyncio.sleep(0.02)

    async def wait(self, within: float = 15) -> int:
        async with asyncio.timeout(within):
            rc = await self.proc.wait()
            await self._pump
        return rc


async def start(cfg: Path, fake: FakeOpenAI) -> Running:
    base = fake.base_url.replace("http://", f"http://botfleet:{PROXY_PASSWORD}@")
    env = {
        **os.environ,
        "OPENAI_BASE_URL": base,
        "OPENAI_API_KEY": API_KEY,
        "E2E_DISCORD_TOKEN": DISCORD_TOKEN,
    }
    env.pop("REDIS_URL", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bots", "run", "--config", str(cfg), "--adapter", "console",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        cwd=ROOT, env=env,
    )  # fmt: skip
    running = Running(proc)
    await running.expect_err("fleet running")
    return running


async def botfleet(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bots", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 15)
    return proc.returncode or 0, out.decode(), err.decode()


async def personas_loaded(port: int) -> float:
    def get() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            return str(resp.read().decode())

    text = await asyncio.to_thread(get)
    return next(float(line.split()[-1]) for line in text.splitlines() if line.startswith("botfleet_personas "))


async def first_contact(fleet: Running, tmp_path: Path) -> str:
    """The skeptic answers with the disclosure; returns this run's console message id prefix."""
    # Console message ids are unique per run: the banner says how they look.
    run = (await fleet.expect("[botfleet] console room")).split("message ids this run are ")[1].split("-")[0]
    await fleet.say("@skeptic is this a good idea?")  # console message id {run}-1
    assert (await fleet.expect("[The Skeptic]")) == "[The Skeptic] skeptic says hi"
    assert (await fleet.expect("    — AI")) == "    — AI persona · /about"  # first contact
    assert (tmp_path / "botfleet.pid").read_text().strip() == str(fleet.proc.pid)
    return run


async def check_a_broken_reload_keeps_the_old_fleet(fleet: Running, cfg: Path, port: int) -> None:
    # A broken persona file plus a new valid one: all or nothing, so neither is taken.
    nerd = cfg.parent / "personas" / "nerd.yaml"
    nerd.write_text("id: nerd\nname: The Nerd\nprompt: You count things.\ntriggers:\n  - mention: false\n")
    (cfg.parent / "personas" / "optimist.yaml").write_text(persona_yaml("optimist", "The Optimist", "hope"))
    fleet.proc.send_signal(signal.SIGHUP)
    await fleet.expect_err("reload rejected: 1 problem(s)")
    problem = await fleet.expect_err(f"{nerd}:5: triggers[1]")
    assert "mention: false is not a trigger" in json.loads(problem)["msg"]
    # `botfleet check` prints the very same line.
    rc, out, _ = await botfleet("check", "--config", str(cfg))
    assert rc == 2 and json.loads(problem)["msg"] in out.splitlines()
    await fleet.say("@nerd are you still there?")
    assert (await fleet.expect("[The Nerd]")) == "[The Nerd] nerd says hi"
    assert await personas_loaded(port) == 2


async def check_botfleet_reload_applies_the_fix(fleet: Running, cfg: Path) -> None:
    # Fixed: `botfleet reload` validates, finds the process by its pid file and signals it.
    (cfg.parent / "personas" / "nerd.yaml").write_text(persona_yaml("nerd", "The Nerd", "count things"))
    rc, _, err = await botfleet("reload", "--config", str(cfg))
    assert rc == 0, err
    assert f"process {fleet.proc.pid}" in err
    await fleet.expect_err("reloaded: 3 personas (added: optimist; removed: none)")
    await fleet.say("@optimist and you?")
    assert (await fleet.expect("[The Optimist]")) == "[The Optimist] optimist says hi"


async def check_why_from_another_process(cfg: Path, run: str) -> None:
    """The audit of a running fleet, from another process."""
    rc, out, err = await botfleet("why", "console", f"{run}-1", "--config", str(cfg))
    assert rc == 0, err
    assert out.splitlines()[0] == f"console:{run}-1 (message in console)"
    assert out.splitlines()[1].split() == ["skeptic", "reply", "mention:platform"]
    rc, out, _ = await botfleet("why", "console", "999", "--config", str(cfg))
    assert rc == 1 and "not in the audit" in out


def check_json_logs_without_secrets(err: list[str]) -> None:
    # One JSON object per line; decisions logged with persona, trigger, reason and latency.
    records = [json.loads(line) for line in err]
    decisions = [r for r in records if r["logger"] == "botfleet.decision"]
    assert {"persona", "trigger", "reason", "latency_ms", "event", "action"} <= decisions[0].keys()
    everything = "\n".join(err)
    for secret in (API_KEY, DISCORD_TOKEN, PROXY_PASSWORD):
        assert secret not in everything
    assert "botfleet:***@127.0.0.1" in everything  # the endpoint is still logged, masked
    # No message text at INFO.
    assert not any("good idea" in r["msg"] for r in records if r["level"] == "INFO")


async def test_reload_keeps_the_old_fleet_on_errors_and_applies_a_valid_change(
    tmp_path: Path, unused_tcp_port: int
) -> None:
    port = unused_tcp_port
    cfg = write_fleet(tmp_path, port)
    async with FakeOpenAI(reply=persona_reply) as fake:
        fleet = await start(cfg, fake)
        run = await first_contact(fleet, tmp_path)
        await check_a_broken_reload_keeps_the_old_fleet(fleet, cfg, port)
        await check_botfleet_reload_applies_the_fix(fleet, cfg)
        await check_why_from_another_process(cfg, run)
        assert fleet.proc.stdin is not None
        fleet.proc.stdin.close()
        assert await fleet.wait() == 0
    assert not (tmp_path / "botfleet.pid").exists()
    check_json_logs_without_secrets(fleet.err)


async def test_sigterm_with_replies_in_flight_exits_0(tmp_path: Path, unused_tcp_port: int) -> None:
    cfg = write_fleet(tmp_path, unused_tcp_port, shutdown_seconds=1)
    async with FakeOpenAI(reply=persona_reply) as fake:
        fleet = await start(cfg, fake)
        # Both panelists ask at once: one answer comes within the grace period, the other never would.
        fake.script(Delay(0.3), Delay(30))
        await fleet.say("/panel should I?")
        async with asyncio.timeout(10):
            while len(fake.requests) < 2:  # noqa: ASYNC110 - the fake server has no event to wait on
                await asyncio.sleep(0.02)
        loop = asyncio.get_running_loop()
        began = loop.time()
        fleet.proc.send_signal(signal.SIGTERM)
        assert fleet.proc.stdout is not None
        out = (await asyncio.wait_for(fleet.proc.stdout.read(), 15)).decode()
        assert await fleet.wait() == 0, "\n".join(fleet.err)
        assert loop.time() - began < 6
    answers = [line for line in out.splitlines() if line.startswith("[The ")]
    assert len(answers) == 1 and answers[0].endswith("says hi"), out
    assert "cut off" not in out
    await_msgs = [json.loads(line)["msg"] for line in fleet.err]
    assert "shutdown: cancelling 1 replies still in flight" in await_msgs
    assert not any("Traceback" in line or '"level": "ERROR"' in line for line in fleet.err), fleet.err


async def test_no_token_and_no_console_input_exits_2_but_a_pipe_still_works(tmp_path: Path) -> None:
    """With no platform token the fleet falls back to the console; with stdin on /dev/null (a container
    without a tty) that would idle forever, so it refuses. A pipe is console input and keeps working."""
    (tmp_path / "personas").mkdir()
    (tmp_path / "personas" / "skeptic.yaml").write_text(persona_yaml("skeptic", "The Skeptic", "doubt things"))
    cfg = tmp_path / "config.yaml"
    cfg.write_text("personas_dir: personas\nllm: {provider: openai, model: fake-gpt}\n")
    async with FakeOpenAI(reply=persona_reply) as fake:
        env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DISCORD_TOKEN", "TELEGRAM_TOKEN")}
        env.update(OPENAI_BASE_URL=fake.base_url, OPENAI_API_KEY=API_KEY)

        async def run(stdin: int, feed: bytes | None) -> tuple[int, str, str]:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bots", "run", "--config", str(cfg),
                stdin=stdin, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT, env=env,
            )  # fmt: skip
            out, err = await asyncio.wait_for(proc.communicate(feed), 30)
            return proc.returncode or 0, out.decode(), err.decode()

        rc, _, err = await run(asyncio.subprocess.DEVNULL, None)
        assert rc == 2 and "no platform adapter has a token and there is no console input" in err
        rc, out, err = await run(asyncio.subprocess.PIPE, b"@skeptic hi\n")
        assert rc == 0, err
        assert "[The Skeptic] skeptic says hi" in out
