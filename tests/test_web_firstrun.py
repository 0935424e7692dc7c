"""A newcomer's first `botfleet run` in a terminal opens the web room beside the console unasked; a
port someone else holds must not stop that run. Asked for (`--adapter web`), the room still refuses to
start without its port, with the clear error."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import pty
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.console import ConsoleAdapter
from adapters.web import WebAdapter
from bots.app import App, SetupError, make_adapters
from bots.config import FleetConfig
from bots.llm.canned import CannedClient
from bots.loading import platform_sections
from tests.conftest import persona
from tests.fakes.openai_server import FakeOpenAI
from tests.web_world import config_yaml, persona_yaml


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port another program listens on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


def config(port: int) -> FleetConfig:
    raw = {"pid_file": None, "fleet": {"reply_delay_seconds": [0, 0]}, "adapters": {"web": {"port": port}}}
    cfg, problems = platform_sections(FleetConfig.model_validate(raw), [], Path("no-such-config.yaml"))
    assert problems == []
    return cfg


def _web(adapters: list[object]) -> WebAdapter:
    [web] = [a for a in adapters if isinstance(a, WebAdapter)]
    return web


async def test_a_taken_port_on_a_first_run_warns_once_and_the_console_runs_on(
    taken_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = config(taken_port)
    adapters = make_adapters(cfg, [persona("skeptic")], terminal=True)
    assert [a.platform for a in adapters] == ["console", "web"]
    out = io.StringIO()
    console = ConsoleAdapter(stdin=io.StringIO("hi @skeptic\n"), stdout=out)
    app = App(cfg, [persona("skeptic")], llm=CannedClient("meow"), adapters=[console, _web(adapters)], signals=False)
    with caplog.at_level(logging.WARNING):
        await app.start()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [
        f"web room not opened: cannot listen on 127.0.0.1:{taken_port} (Address already in use); the console "
        "runs on. For the web room, set adapters.web.port (BOTFLEET_WEB_PORT in the shipped config.yaml) to a free port"
    ]
    assert not _web(adapters).url  # no address to print
    await asyncio.wait_for(app.run(), 10)
    assert "[Skeptic] meow" in out.getvalue()


@pytest.mark.parametrize("asked", [["web"], ["console", "web"]])
async def test_a_web_room_asked_for_still_stops_the_run_on_a_taken_port(taken_port: int, asked: list[str]) -> None:
    cfg = config(taken_port)
    adapters = make_adapters(cfg, [persona("skeptic")], asked, terminal=True)
    app = App(cfg, [persona("skeptic")], llm=CannedClient("x"), adapters=[_web(adapters)], signals=False)
    with pytest.raises(SetupError, match=f"web room: cannot listen on 127.0.0.1:{taken_port}.*free port"):
        await app.start()
    assert not app.fleet.accepting


def test_only_the_room_opened_unasked_is_optional() -> None:
    cfg, personas = FleetConfig(), [persona("skeptic")]
    assert _web(make_adapters(cfg, personas, terminal=True)).optional
    assert not _web(make_adapters(cfg, personas, ["web"])).optional
    assert not WebAdapter().optional


async def test_botfleet_run_in_a_terminal_with_the_port_taken_still_opens_the_console(
    tmp_path: Path, taken_port: int
) -> None:
    """The newcomer's first command, in a real terminal (a pty): one warning, then the console answers."""
    (tmp_path / "personas").mkdir()
    (tmp_path / "personas" / "skeptic.yaml").write_text(persona_yaml("skeptic"))
    config = json.loads(config_yaml(""))
    config["adapters"]["web"]["port"] = taken_port
    (tmp_path / "config.yaml").write_text(json.dumps(config))
    async with FakeOpenAI(reply=lambda body: "Who pays the vet?") as fake:
        env = {**os.environ, "OPENAI_BASE_URL": fake.base_url, "OPENAI_API_KEY": "test-key", "TERM": "dumb"}
        env.pop("REDIS_URL", None)
        master, slave = pty.openpty()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bots", "run", "--config", str(tmp_path / "config.yaml"),
            cwd=tmp_path, env=env, stdin=slave, stdout=slave, stderr=slave,
        )  # fmt: skip
        os.close(slave)
        out: list[bytes] = []
        loop = asyncio.get_running_loop()

        def read() -> None:
            # Read everything the terminal shows until it closes: a full pty would block the process.
            while True:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # closed: the process ended
                    return
                if not chunk:
                    return
                out.append(chunk)

        reader = loop.run_in_executor(None, read)

        async def until(text: bytes) -> None:
            deadline = loop.time() + 30
            while text not in b"".join(out):
                assert loop.time() < deadline, f"never saw {text!r} in {b''.join(out).decode(errors='replace')}"
                await asyncio.sleep(0.05)

        try:
            await until(b"web room not opened")
            os.write(master, b"hi @skeptic\r")
            await until(b"Who pays the vet?")
            os.write(master, b"\x04")  # Ctrl-D: end of input ends the run
            assert await asyncio.wait_for(proc.wait(), 60) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            await asyncio.wait_for(reader, 10)  # the process's end closed the terminal
            os.close(master)
        seen = b"".join(out)
        shown = seen.decode(errors="replace")
        assert shown.count("web room not opened") == 1 and "adapters.web.port" in shown
        assert "web room at" not in shown and "Traceback" not in shown
