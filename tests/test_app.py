"""`App`, the process lifecycle, in-process: start, feed the console, stop; and with a Redis store, the
account leases it takes and hands back. The real console adapter, the real openai SDK against the fake
endpoint, a real redis-server."""

from __future__ import annotations

import asyncio
import io
import os
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import pytest
import redis.asyncio

from adapters.console import ConsoleAdapter
from bots.app import App, SetupError, make_llm
from bots.config import FleetConfig
from bots.llm.canned import CannedClient
from bots.ops.leasestatus import read_leases
from tests.conftest import RecordingAdapter, msg, persona
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.polling import wait_for


def config(**extra: Any) -> FleetConfig:
    data: dict[str, Any] = {"fleet": {"reply_delay_seconds": [0, 0]}, "pid_file": None, "about": {"disclosure": ""}}
    data.update(extra)
    return FleetConfig.model_validate(data)


class Pipe:
    """The console's stdin as a real pipe: lines arrive while the app runs, closing it is end of input."""

    def __init__(self) -> None:
        r, w = os.pipe()
        self.reader: TextIO = open(r, encoding="utf-8")
        self.writer: TextIO = open(w, "w", encoding="utf-8")

    def say(self, line: str) -> None:
        self.writer.write(line + "\n")
        self.writer.flush()

    def end(self) -> None:
        if not self.writer.closed:
            self.writer.close()

    def close(self) -> None:
        self.end()
        self.reader.close()


@pytest.fixture
def pipe() -> Iterator[Pipe]:
    p = Pipe()
    yield p
    p.close()


def lines(out: io.StringIO) -> list[str]:
    return out.getvalue().splitlines()


async def test_console_app_answers_each_line_and_stops_at_end_of_input(tmp_path: Path, pipe: Pipe) -> None:
    out = io.StringIO()
    pid_file = tmp_path / "botfleet.pid"
    cfg = config(pid_file=str(pid_file), metrics={"port": 0})
    app = App(
        cfg,
        [persona("skeptic"), persona("nerd")],
        llm=CannedClient("fine"),
        adapters=[ConsoleAdapter(stdin=pipe.reader, stdout=out)],
        signals=False,
    )
    await app.start()
    running = asyncio.create_task(app.run())
    try:
        assert pid_file.read_text().strip() == str(os.getpid())
        assert app.ops.admin is not None
        health = f"http://127.0.0.1:{app.ops.admin.port}/healthz"
        assert await asyncio.to_thread(lambda: urllib.request.urlopen(health, timeout=5).read()) == b"ok\n"

        pipe.say("hi @skeptic")
        await wait_for(lambda: "[Skeptic] fine" in lines(out))
        pipe.say("/personas")
        await wait_for(lambda: any(line.startswith("[botfleet] AI personas here:") for line in lines(out)))
        pipe.say("@nerd and you?")
        pipe.end()
        async with asyncio.timeout(10):
            await running
    finally:
        await app.stop()
    # The reply asked for just before the end of input was still written, then everything closed.
    assert "[Nerd] fine" in lines(out)
    assert not pid_file.exists()
    assert app.ops.admin is None or app.ops.admin._server is None
    assert not app.fleet._accepting


async def test_request_stop_ends_a_run_while_the_console_is_still_open(pipe: Pipe) -> None:
    out = io.StringIO()
    async with FakeOpenAI(reply=lambda body: "from the endpoint") as fake:
        cfg = config(llm={"provider": "openai", "model": "fake-gpt", "timeout_seconds": 2})
        llm = make_llm(cfg, {"OPENAI_BASE_URL": fake.base_url, "OPENAI_API_KEY": "test-key"})
        app = App(cfg, [persona("skeptic")], llm=llm, adapters=[ConsoleAdapter(pipe.reader, out)], signals=False)
        await app.start()
        running = asyncio.create_task(app.run())
        pipe.say("@skeptic hello")
        await wait_for(lambda: "[Skeptic] from the endpoint" in lines(out), within=10)
        app.request_stop()
        async with asyncio.timeout(10):
            await running
        assert running.exception() is None
        assert len(fake.requests) == 1
        # The console no longer feeds a stopped fleet.
        pipe.say("@skeptic anyone?")
        await asyncio.sleep(0.1)
        assert len(fake.requests) == 1
        await reader_gone(pipe)


async def reader_gone(pipe: Pipe) -> None:
    """End the input and let the console's reading thread finish while the loop it reports to is alive."""
    pipe.end()
    for thread in threading.enumerate():
        if thread.name == "console-stdin":
            await asyncio.to_thread(thread.join, 5)


async def test_metrics_port_in_use_is_a_setup_error_and_leaves_nothing_running(pipe: Pipe) -> None:
    first = App(config(metrics={"port": 0}), [persona("a")], llm=CannedClient(), adapters=[], signals=False)
    await first.start()
    try:
        assert first.ops.admin is not None
        taken = first.ops.admin.port
        second = App(
            config(metrics={"port": taken}),
            [persona("a")],
            llm=CannedClient(),
            adapters=[ConsoleAdapter(pipe.reader, io.StringIO())],
            signals=False,
        )
        with pytest.raises(SetupError, match=f"cannot serve metrics on 127.0.0.1:{taken}"):
            await second.start()
        assert not second.fleet._accepting
        await second.stop()  # a second stop is harmless
    finally:
        await first.stop()


class LeasedAdapter(RecordingAdapter):
    """A platform with one receiving account, recording when the App connects and disconnects it."""

    def __init__(self) -> None:
        super().__init__()
        self.receiving: set[str] = set()

    def accounts(self) -> list[str]:
        return ["test:host"]

    async def connect(self, account: str) -> bool:
        self.receiving.add(account)
        return True

    async def disconnect(self, account: str) -> None:
        self.receiving.discard(account)


async def holder(url: str, prefix: str) -> str:
    client = redis.asyncio.Redis.from_url(url)
    try:
        leases, _ = await read_leases(client, prefix)
    finally:
        await client.aclose()
    return next((lease.holder for lease in leases if lease.account == "test:host"), "")


async def test_apps_on_one_redis_share_the_account_and_hand_it_over_on_stop(redis_url: str, redis_prefix: str) -> None:
    cfg = config(store=redis_url, fleet={"reply_delay_seconds": [0, 0], "lease_seconds": 1})
    adapters = [LeasedAdapter(), LeasedAdapter()]
    apps = [
        App(cfg, [persona("skeptic")], llm=CannedClient("ok"), adapters=[a], signals=False, redis_prefix=redis_prefix)
        for a in adapters
    ]
    try:
        for app in apps:
            await app.start()
        # One receiver only, whichever process got the lease.
        await wait_for(lambda: sum(bool(a.receiving) for a in adapters) == 1, within=10)
        first = 0 if adapters[0].receiving else 1
        other = 1 - first
        first_leases, other_leases = apps[first].leases, apps[other].leases
        assert first_leases is not None and other_leases is not None
        assert await holder(redis_url, redis_prefix) == first_leases.identity

        # The shared store serves replies as usual.
        await apps[first].fleet.dispatch(msg("@skeptic hi", mentions=frozenset({"skeptic"})))
        await apps[first].fleet.drain()
        assert [text for _, text in adapters[first].replies] == ["ok"]

        # Stopping hands the account back at once: the other process takes it without waiting for expiry.
        await apps[first].stop()
        assert not adapters[first].receiving
        await wait_for(lambda: adapters[other].receiving == {"test:host"}, within=10)
        assert await holder(redis_url, redis_prefix) == other_leases.identity
    finally:
        for app in apps:
            await app.stop()
    assert await holder(redis_url, redis_prefix) == ""
