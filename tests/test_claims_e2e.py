"""A message outlives the process answering it (issue 11, item 11): `botfleet run` receives a mention on
the fake Telegram, has acknowledged the update and is waiting on a slow model when it is SIGKILLed; a
second `botfleet run` on the same Redis takes over the accounts and the message's claim, and the
message is answered exactly once."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

from bots.ops.leasestatus import read_leases
from bots.state.redis import make_client
from tests.fakes.openai_server import Delay, FakeOpenAI
from tests.fakes.telegram import FakeTelegram, SentMessage
from tests.redis_server import RedisServer
from tests.telegram_runs import ROOT, TG_ACCOUNTS, TG_PERSONAS, TG_TOKENS, Runs

LEASE = 1.0


async def until(cond: Callable[[], object], within: float, what: str, runs: Runs) -> None:
    deadline = time.monotonic() + within
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within}s: {what}\n{runs.tails()}")
        await asyncio.sleep(0.05)


async def test_a_message_being_answered_survives_sigkill(
    tmp_path: Path, redis_servers: Callable[[], RedisServer]
) -> None:
    server = redis_servers()
    # The first completion hangs (the model is slow): process A is mid-reply when it dies.
    async with FakeTelegram() as fake, FakeOpenAI(reply=lambda body: "I doubt that.") as ai:
        ai.script(Delay(60))
        host = fake.add_bot(TG_TOKENS["host"], "fleet_host_bot", "Fleet")
        skeptic = fake.add_bot(TG_TOKENS["skeptic"], "skeptic_bot", "Skeptic", can_read_all_group_messages=True)
        optimist = fake.add_bot(TG_TOKENS["optimist"], "optimist_bot", "Optimist")
        alice = fake.add_user("Alice", "alice")
        group = fake.add_group("Lounge", admins=[host["id"]], members=[skeptic["id"], optimist["id"], alice["id"]])
        (tmp_path / "personas").mkdir()
        for pid, text in TG_PERSONAS.items():
            (tmp_path / "personas" / f"{pid}.yaml").write_text(text)
        (tmp_path / "config.yaml").write_text(
            f"store: {server.url}\n"
            "llm: {provider: openai, model: fake-gpt, timeout_seconds: 60, max_retries: 0}\n"
            f"fleet: {{reply_delay_seconds: [0, 0], lease_seconds: {LEASE}}}\n"
            f"adapters: {{telegram: {{token: '{TG_TOKENS['host']}', base_url: '{fake.base_url}'}}}}\n"
            "pid_file: null\n"
        )
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "OPENAI_BASE_URL": ai.base_url,
            "OPENAI_API_KEY": "test-key",
            "SKEPTIC_TELEGRAM_TOKEN": TG_TOKENS["skeptic"],
            "OPTIMIST_TELEGRAM_TOKEN": TG_TOKENS["optimist"],
        }
        env.pop("REDIS_URL", None)
        runs = Runs(tmp_path, env)
        client = make_client(server.url)
        held: dict[str, str] = {}

        async def refresh() -> None:
            leases, _ = await read_leases(client)
            held.clear()
            held.update({x.account: x.holder for x in leases if x.holder})

        def skeptic_replies() -> list[SentMessage]:
            return [s for s in fake.sent(group["id"]) if s.bot_username == "skeptic_bot"]

        async def holds_all(pid: int) -> bool:
            await refresh()
            return set(held) == TG_ACCOUNTS and {h.split(":")[1] for h in held.values()} == {str(pid)}

        try:
            a = await runs.start()
            deadline = time.monotonic() + 30
            while not await holds_all(a.pid):
                assert time.monotonic() < deadline, f"a never held every account: {held}\n{runs.tails()}"
                await asyncio.sleep(0.05)

            said = await fake.user_says(group, alice, "@skeptic_bot is this legit?")
            # A received it (and moved its getUpdates offset past it) and is waiting on the model.
            await until(lambda: ai.requests, 15, "a asks the model", runs)
            a.kill()
            await a.wait()
            assert skeptic_replies() == []

            b = await runs.start()
            await until(skeptic_replies, 20, "b answers the message a was answering", runs)
            # Long enough for a second answer (another takeover, a redelivery) to show up if there were one.
            await asyncio.sleep(3 * LEASE)
            replies = skeptic_replies()
            assert len(replies) == 1, replies
            assert replies[0].reply_to_message_id == said["message_id"]
            assert "I doubt that." in (replies[0].text or "")
            assert b.returncode is None
            assert "taking over telegram:" in runs.logs[1].read_text()
        finally:
            await runs.close()
            await client.aclose()
