"""The fake Discord's sharding against real discord.py clients: /gateway/bot recommends the shard
count, IDENTIFY carries [shard id, shard count], each guild's events go only to the shard that owns
it ((guild_id >> 22) % shards), direct messages to shard 0, and an unsharded IDENTIFY of a bot that
must shard is closed with 4011."""

from __future__ import annotations

import asyncio

import discord
import pytest

from tests.fake_discord_clients import HOST_TOKEN, World, collect, running, world
from tests.fakes.discord.models import shard_of

__all__ = ["world"]  # the fixture, from fake_discord_clients.py


def guild_on(shard: int, shards: int) -> int:
    return ((1 << 40) + shard) << 22 | 5


@pytest.mark.asyncio
async def test_each_shard_hears_only_its_own_guilds_and_dms_go_to_shard_zero(world: World) -> None:
    fake = world.fake
    fake.set_shards(world.host, 2)
    guilds = [fake.add_guild(f"g{i}", guild_id=guild_on(i, 2)) for i in range(2)]
    channels = [fake.add_channel(g, "general") for g in guilds]
    assert [shard_of(int(g["id"]), 2) for g in guilds] == [0, 1]

    async with (
        running(HOST_TOKEN, shard_id=0, shard_count=2) as zero,
        running(HOST_TOKEN, shard_id=1, shard_count=2) as one,
    ):
        shards, _, _ = await zero.http.get_bot_gateway()
        assert shards == 2
        # READY and GUILD_CREATE: each shard knows its own guilds only (besides the world's default guild).
        assert int(guilds[0]["id"]) in {g.id for g in zero.guilds} - {g.id for g in one.guilds}
        assert int(guilds[1]["id"]) in {g.id for g in one.guilds} - {g.id for g in zero.guilds}
        heard = {0: collect(zero, "message"), 1: collect(one, "message")}
        for channel in channels:
            await fake.post_message(channel, world.alice, "hello")
        await fake.post_dm(world.host, world.alice, "psst")
        await fake.wait_for(lambda: len(heard[0]) == 2 and len(heard[1]) == 1)
        await asyncio.sleep(0.2)
        assert [m.channel.id for m in heard[1]] == [int(channels[1]["id"])]
        assert [m.content for m in heard[0]] == ["hello", "psst"]
        assert heard[0][0].channel.id == int(channels[0]["id"])
    assert [i.shard for i in fake.identifies] == [(0, 2), (1, 2)]


@pytest.mark.asyncio
async def test_a_bot_that_must_shard_is_refused_without_a_shard(world: World) -> None:
    world.fake.set_shards(world.host, 4, required=True)
    client = discord.Client(intents=discord.Intents.default())
    try:
        await client.login(HOST_TOKEN)
        with pytest.raises(discord.ConnectionClosed) as refused:
            await asyncio.wait_for(client.connect(reconnect=True), 5)
    finally:
        await client.close()
    assert refused.value.code == 4011
    assert world.fake.identifies == []
