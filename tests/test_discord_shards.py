"""A sharded host bot across processes: two whole `App`s on one real redis-server and the fake Discord,
whose host bot must run as 4 shards (an unsharded IDENTIFY is refused, as for a bot in 2,500+ guilds).
The Apps lease the shards between them like accounts, identify no faster than Discord allows per
`max_concurrency` bucket (across both processes), answer each guild once, and when one dies without
handing its shards back the other takes them over. Real discord.py clients, nothing of ours mocked."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from adapters.discord import DiscordAdapter
from adapters.discord.shards import IdentifyTurns, shard_name
from bots.app import App
from bots.config import FleetConfig
from bots.llm.canned import CannedClient
from bots.ops.leases import LeaseManager
from bots.persona import Persona
from tests.fakes.discord import FakeDiscord, JsonDict, point_discord_py_at
from tests.fakes.discord.models import Identify, shard_of
from tests.fakes.polling import wait_for

SHARDS = 4
BUCKETS = 2  # max_concurrency: shards 0 and 2 share a bucket, as do 1 and 3
TURN = 0.5  # the identify interval per bucket (Discord's is 5 s)
# Turns are taken before connecting; the fake sees each IDENTIFY a connect later, and connects take
# a varying time on a busy machine. Identifies without turns land within milliseconds of each other.
JITTER = 0.2
LEASE = 1.0
HOST_TOKEN = "host-token"
ALL = {shard_name(i, SHARDS) for i in range(SHARDS)}


def guild_id(shard: int) -> int:
    """A snowflake that Discord's formula puts on `shard`."""
    return ((1 << 40) + shard) << 22 | 7


class Guilds:
    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake
        self.host = fake.add_bot(HOST_TOKEN, "Botfleet")
        fake.set_shards(self.host, SHARDS)
        fake.set_session_start_limit(self.host, max_concurrency=BUCKETS)
        self.alice = fake.add_user("alice")
        self.channels: list[JsonDict] = []
        for shard in range(SHARDS):
            guild = fake.add_guild(f"Guild {shard}", guild_id=guild_id(shard))
            assert shard_of(int(guild["id"]), SHARDS) == shard
            self.channels.append(fake.add_channel(guild, "general"))

    def answers(self, channel: JsonDict) -> list[JsonDict]:
        return [m for m in self.fake.messages(channel) if m.get("webhook_id")]

    def identifies(self) -> list[Identify]:
        return [i for i in self.fake.identifies if i.bot_id == int(self.host["id"])]


def skeptic() -> Persona:
    return Persona.model_validate(
        {"id": "skeptic", "name": "Skeptic", "prompt": "You are skeptic.", "triggers": [{"keywords": ["proof"]}]}
    )


def make_app(fake: FakeDiscord, tmp: Path, name: str, redis_url: str, prefix: str) -> tuple[App, DiscordAdapter]:
    cfg = FleetConfig.model_validate(
        {
            "store": redis_url,
            "fleet": {"reply_delay_seconds": [0, 0], "lease_seconds": LEASE},
            "adapters": {
                "discord": {
                    "token": HOST_TOKEN,
                    "api_base_url": fake.api_base,
                    "gateway_url": fake.gateway_url,
                    "shards": "auto",
                }
            },
            "about": {"disclosure": ""},
            "pid_file": None,
        }
    )
    personas = [skeptic()]
    adapter = DiscordAdapter(
        cfg.adapters.discord,
        personas,
        command_state=tmp / f"commands-{name}.json",
        guild_ready_timeout=0.05,
        identify_interval=TURN,
    )
    app = App(cfg, personas, llm=CannedClient("Show me."), adapters=[adapter], signals=False, redis_prefix=prefix)
    return app, adapter


def leases(app: App) -> LeaseManager:
    assert app.leases is not None
    return app.leases


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as fake:
        with point_discord_py_at(fake):
            yield fake


async def crash(app: App, adapter: DiscordAdapter) -> None:
    """The process dies: no more lease renewals, no hand-back; its gateway sessions end with it."""
    manager = leases(app)
    assert manager._task is not None
    manager._task.cancel()
    await asyncio.gather(manager._task, return_exceptions=True)
    manager._task = None
    for account in manager.connected:
        await adapter.disconnect(account)


def assert_spaced(identifies: list[Identify]) -> None:
    """No two IDENTIFYs of one bucket closer than the interval, whichever process sent them."""
    for bucket in range(BUCKETS):
        times = sorted(i.at for i in identifies if i.shard is not None and i.shard[0] % BUCKETS == bucket)
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert all(gap >= TURN - JITTER for gap in gaps), (bucket, gaps)


async def test_two_apps_split_four_shards_answer_each_guild_once_and_take_over(
    fake: FakeDiscord, tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    world = Guilds(fake)
    (a, a_discord), (b, _) = (make_app(fake, tmp_path, n, redis_url, redis_prefix) for n in "ab")
    try:
        await a.start()
        await b.start()
        # Two processes, four shards: two each, every shard connected exactly once.
        await wait_for(lambda: len(leases(a).connected) == 2 and len(leases(b).connected) == 2, within=20)
        assert leases(a).connected | leases(b).connected == ALL
        await wait_for(lambda: len(fake._live_sessions()) == SHARDS, within=5)
        assert sorted(s.shard for s in fake._live_sessions() if s.shard) == [(i, SHARDS) for i in range(SHARDS)]
        # Every session identified as a shard (an unsharded one would have been refused with 4011).
        assert all(i.shard is not None and i.shard[1] == SHARDS for i in world.identifies())
        assert_spaced(world.identifies())

        for channel in world.channels:
            await fake.post_message(channel, world.alice, "any proof of that?")
        await wait_for(lambda: all(world.answers(c) for c in world.channels), within=10)
        await asyncio.sleep(0.5)  # time enough for a second answer to show up
        assert [len(world.answers(c)) for c in world.channels] == [1] * SHARDS

        # One process dies without handing its shards back: the other takes them once the leases lapse.
        await crash(a, a_discord)
        await wait_for(lambda: leases(b).connected == ALL, within=LEASE * 3 + SHARDS * TURN + 5)
        await wait_for(lambda: len(fake._live_sessions()) == SHARDS, within=5)
        assert_spaced(world.identifies())

        for channel in world.channels:
            await fake.post_message(channel, world.alice, "and now, proof?")
        await wait_for(lambda: all(len(world.answers(c)) == 2 for c in world.channels), within=10)
        await asyncio.sleep(0.5)
        assert [len(world.answers(c)) for c in world.channels] == [2] * SHARDS
    finally:
        await a.stop()
        await b.stop()


async def test_identify_turns_space_each_bucket_and_wait_for_a_shared_turn() -> None:
    """The in-process side of the identify limit: shards of one bucket go `interval` apart, other
    buckets at once; a shared turn-taker that says "wait" is waited for."""
    now = [0.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    asked: list[str] = []
    busy = {"discord:host:1": 0.4}

    async def shared(bucket: str, interval: float) -> float:
        asked.append(bucket)
        return busy.pop(bucket, 0.0)

    turns = IdentifyTurns(interval=5.0, clock=lambda: now[0], sleep=sleep)
    turns.max_concurrency = 2
    turns.shared = shared
    await turns.wait("discord:host", 0)
    await turns.wait("discord:host", 1)  # another bucket: only the shared turn's 0.4 s
    await turns.wait("discord:host", 2)  # bucket 0 again: 5 s after shard 0, less the time gone by
    assert slept == [0.4, 4.6]
    assert asked == ["discord:host:0", "discord:host:1", "discord:host:1", "discord:host:0"]


async def test_redis_turns_let_one_process_identify_per_bucket_per_interval(redis_url: str, redis_prefix: str) -> None:
    from bots.ops.identifyturns import RedisIdentifyTurns
    from bots.state.redis import make_client

    client = make_client(redis_url)
    try:
        first = RedisIdentifyTurns(client, redis_prefix, "process-a")
        second = RedisIdentifyTurns(client, redis_prefix, "process-b")
        assert await first("discord:host:0", 2.0) == 0
        wait = await second("discord:host:0", 2.0)
        assert 1.0 < wait <= 2.0
        assert await second("discord:host:1", 2.0) == 0  # another bucket is free
    finally:
        await client.aclose()


async def test_shards_whose_sessions_are_invalidated_identify_again_in_turn(
    fake: FakeDiscord, tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    """Discord forgets the sessions (a RESUME is refused): discord.py identifies each shard again, and
    those identifies wait for their bucket's turn like the first ones."""
    world = Guilds(fake)
    app, _ = make_app(fake, tmp_path, "a", redis_url, redis_prefix)
    try:
        await app.start()
        await wait_for(lambda: leases(app).connected == ALL, within=20)
        for session in [s for s in fake._sessions.values() if s.ws is not None]:
            del fake._sessions[session.session_id]
            session.dropped = True
            await session.ws.close(code=4000, message=b"session lost")
        await wait_for(lambda: len(world.identifies()) == 2 * SHARDS, within=10)
        await wait_for(lambda: len(fake._live_sessions()) == SHARDS, within=5)
        assert_spaced(world.identifies())
        for channel in world.channels:
            await fake.post_message(channel, world.alice, "proof, please")
        await wait_for(lambda: all(len(world.answers(c)) == 1 for c in world.channels), within=10)
    finally:
        await app.stop()
