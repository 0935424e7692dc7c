"""A sharded host bot in one process (memory store, no leases): it receives on every shard, and slash
commands in guilds on different shards are answered by the shard that owns each guild; a host that
Discord requires to shard is told how to fix it; the setting itself. The world is
tests/discord_world.py; the fake routes each guild's events to its shard only."""

from __future__ import annotations

import logging

import pytest
from pydantic import ValidationError

from bots.config import DiscordConfig
from tests.discord_world import HOST_TOKEN, World, running, world
from tests.fakes.discord.models import shard_of

__all__ = ["world"]  # the fixture, from discord_world.py


async def test_sharded_host_answers_slash_commands_in_guilds_on_either_shard(world: World) -> None:
    fake = world.fake
    fake.set_shards(world.host, 2)
    # Each shard in a bucket of its own: both identify at once (Discord's 5 s per bucket otherwise).
    fake.set_session_start_limit(world.host, max_concurrency=2)
    home = shard_of(int(world.guild["id"]), 2)
    other = fake.add_guild("Other Server", guild_id=((1 << 40) + 1 - home) << 22 | 3)
    assert shard_of(int(other["id"]), 2) == 1 - home
    lobby = fake.add_channel(other, "lobby")

    async with running(world, discord={"shards": "auto"}) as (_, adapter):
        assert adapter.accounts()[:2] == ["discord:host#0/2", "discord:host#1/2"]
        assert "discord:host" not in adapter.accounts()
        host_id = int(world.host["id"])
        assert sorted(i.shard for i in fake.identifies if i.bot_id == host_id and i.shard) == [(0, 2), (1, 2)]
        for channel in (world.general, lobby):
            asked = await fake.send_interaction(HOST_TOKEN, channel, world.alice, "personas")
            await fake.wait_for(lambda asked=asked: asked.callbacks and not asked.loading)
            listing = fake.message(asked.original_message_id or 0)
            assert "The Realist" in listing["content"]


async def test_an_unsharded_host_that_must_shard_is_told_how_to_fix_it(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    world.fake.set_shards(world.host, 2, required=True)
    async with running(world) as (_, adapter):
        assert "discord:host" in adapter.accounts()
    said = [r.getMessage() for r in caplog.records if "discord:host did not connect" in r.getMessage()]
    assert said and "set adapters.discord.shards to auto" in said[0], said


def test_shards_setting_takes_a_count_or_auto_and_says_what_it_expects() -> None:
    assert DiscordConfig().shards == 1
    assert [DiscordConfig(shards=v).shards for v in (4, "4", "auto")] == [4, 4, "auto"]
    for bad in (0, "many", True):
        with pytest.raises(ValidationError, match="expected a number of shards"):
            DiscordConfig(shards=bad)
