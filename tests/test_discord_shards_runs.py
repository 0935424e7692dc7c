"""`botfleet run`, twice, on one Redis against the fake Discord, whose host bot must run as 4 shards:
the processes split the shards, each guild is answered once, and when one process is SIGKILLed the
other takes its shards over and answers their guilds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from bots.state.redis import make_client
from tests.fakes.discord import FakeDiscord
from tests.fakes.openai_server import FakeOpenAI
from tests.redis_server import RedisServer
from tests.telegram_runs import Runs, run_env
from tests.test_discord_shards import SHARDS, Guilds
from tests.test_leases_runs import Held, Leases

RUN_LEASE = 2.0
SHARD_ACCOUNTS = {f"discord:host#{i}/{SHARDS}" for i in range(SHARDS)}


def write_fleet(tmp_path: Path, store: str, fake: FakeDiscord) -> None:
    (tmp_path / "personas").mkdir()
    (tmp_path / "personas" / "skeptic.yaml").write_text(
        "id: skeptic\nname: Skeptic\nprompt: You doubt things.\ntriggers: [{keywords: [proof]}]\n"
    )
    (tmp_path / "config.yaml").write_text(
        f"store: {store}\n"
        "llm: {provider: openai, model: fake-gpt, timeout_seconds: 5, max_retries: 0}\n"
        f"fleet: {{reply_delay_seconds: [0, 0], lease_seconds: {RUN_LEASE}}}\n"
        f"adapters: {{discord: {{token: host-token, api_base_url: '{fake.api_base}', "
        f"gateway_url: '{fake.gateway_url}', shards: {SHARDS}, "
        f"command_state_file: '{tmp_path / 'commands.json'}'}}}}\n"
        "about: {disclosure: ''}\n"
        "pid_file: null\n"
    )


def shards_held_by(*pids: int) -> Callable[[Held], bool]:
    def check(held: Held) -> bool:
        shards = {a: p for a, p in held.items() if a in SHARD_ACCOUNTS}
        return set(shards) == SHARD_ACCOUNTS and set(shards.values()) == set(pids)

    return check


async def answered(world: Guilds, times: int) -> None:
    """Every guild got `times` answers, and no extra one turns up a while later."""
    await world.fake.wait_for(lambda: all(len(world.answers(c)) >= times for c in world.channels), timeout=15)
    await asyncio.sleep(1.0)
    assert [len(world.answers(c)) for c in world.channels] == [times] * SHARDS


async def test_two_botfleet_runs_split_the_shards_and_one_takes_over_after_sigkill(
    tmp_path: Path, redis_servers: Callable[[], RedisServer]
) -> None:
    server = redis_servers()
    async with FakeDiscord() as fake, FakeOpenAI(reply=lambda body: "Show me.") as ai:
        world = Guilds(fake)
        # Every shard in a bucket of its own: no identify waits its turn, the test stays short.
        fake.set_session_start_limit(world.host, max_concurrency=SHARDS)
        write_fleet(tmp_path, server.url, fake)
        runs = Runs(tmp_path, run_env(ai.base_url))
        leases = Leases(make_client(server.url), runs)
        try:
            a = await runs.start("discord")
            await leases.until(shards_held_by(a.pid), 30, "a holds every shard")
            b = await runs.start("discord")
            await leases.until(shards_held_by(a.pid, b.pid), 30, "the shards split")
            held = await leases.holders()
            assert sorted(held.values()).count(a.pid) == 2, held
            await fake.wait_for(lambda: len(fake._live_sessions()) == SHARDS, timeout=15)

            for channel in world.channels:
                await fake.post_message(channel, world.alice, "any proof?")
            await answered(world, 1)

            killed_at = time.monotonic()
            a.kill()
            await a.wait()
            await leases.until(shards_held_by(b.pid), 15, "b takes a's shards")
            assert time.monotonic() - killed_at < RUN_LEASE + 1.5
            await fake.wait_for(lambda: len(fake._live_sessions()) == SHARDS, timeout=15)

            for channel in world.channels:
                await fake.post_message(channel, world.alice, "and now, proof?")
            await answered(world, 2)
        finally:
            await runs.close()
            await leases.client.aclose()
