"""A newcomer's first `botfleet run` in a terminal opens the web room beside the console unasked; a
port someone else holds must not stop that run. Asked for (`--adapter web`), the room still refuses to
start without its port, with the clear error."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import socket
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
from tests.test_console_ux import PROMPT, Terminal
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
        term = Terminal(tmp_path / "config.yaml", fake, adapters=())
        await term.start()
        warned = await term.wait_for("web room not opened")
        await term.wait_for(PROMPT.strip(), warned)
        await term.type("hi @skeptic\r")
        await term.wait_for("Who pays the vet?", warned)
        assert await term.close() == 0
    shown = term.screen_text
    assert shown.count("web room not opened") == 1 and "adapters.web.port" in shown
    assert "web room at" not in shown and "Traceback" not in shown
