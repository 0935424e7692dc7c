"""The fake Discord against the real discord.py: tokens, the IDENTIFY budget, RESUME, refusals and 429s."""

from __future__ import annotations

import discord
import pytest

from tests.fake_discord_clients import HOST_TOKEN, PERSONA_TOKEN, World, collect, running, text_channel, world

__all__ = ["world"]  # the fixture, from fake_discord_clients.py


@pytest.mark.asyncio
async def test_invalid_token_raises_login_failure(world: World) -> None:
    client = discord.Client(intents=discord.Intents.default())
    try:
        with pytest.raises(discord.LoginFailure):
            await client.login("not-a-registered-token")
    finally:
        await client.close()
    assert world.fake.calls[-1].status == 401


@pytest.mark.asyncio
async def test_gateway_bot_reports_each_bots_session_start_limit_and_identify_spends_one(world: World) -> None:
    fake = world.fake
    fake.set_session_start_limit(world.persona, total=1000, remaining=3, reset_after=60_000, max_concurrency=1)
    async with running(PERSONA_TOKEN) as persona:
        _, url, limit = await persona.http.get_bot_gateway()
        assert url == fake.gateway_url
        assert limit == {"total": 1000, "remaining": 2, "reset_after": 60_000, "max_concurrency": 1}
    async with running(PERSONA_TOKEN):
        pass
    async with running(PERSONA_TOKEN), running(PERSONA_TOKEN):
        pass
    assert fake.session_start_limit(world.persona)["remaining"] == 0  # never below zero
    # Per bot: the host's budget is untouched by the persona's connects.
    assert fake.session_start_limit(world.host) == {
        "total": 1000,
        "remaining": 1000,
        "reset_after": 0,
        "max_concurrency": 1,
    }


@pytest.mark.asyncio
async def test_denied_channel_raises_forbidden_and_is_recorded(world: World) -> None:
    fake = world.fake
    fake.deny_channel(world.general, world.persona)
    async with running(PERSONA_TOKEN) as persona, running(HOST_TOKEN) as host:
        with pytest.raises(discord.Forbidden) as excinfo:
            await text_channel(persona, world.general_id).send("let me in")
        assert excinfo.value.code == 50013
        assert [c.bot_id for c in fake.denied] == [int(world.persona["id"])]
        # The denial is per bot: the host still posts.
        await text_channel(host, world.general_id).send("fine here")
        assert [m["content"] for m in fake.messages(world.general)] == ["fine here"]


@pytest.mark.asyncio
async def test_rate_limit_is_retried_only_with_via_header(world: World) -> None:
    fake = world.fake
    async with running(HOST_TOKEN) as host:
        channel = text_channel(host, world.general_id)
        fake.fail_next("POST", r"/messages$", 429, retry_after=0.01)
        await channel.send("after a pause")
        assert [c.status for c in fake.calls_to("POST", r"/messages$")] == [429, 200]

        fake.fail_next("POST", r"/messages$", 429, retry_after=0.01, via=False)
        with pytest.raises(discord.HTTPException) as excinfo:
            await channel.send("looks like a ban")
        assert excinfo.value.status == 429
        assert [m["content"] for m in fake.messages(world.general)] == ["after a pause"]


@pytest.mark.asyncio
async def test_client_resumes_after_dropped_connection(world: World) -> None:
    fake = world.fake
    async with running(PERSONA_TOKEN) as persona:
        inbox, resumed = collect(persona, "message"), collect(persona, "resumed")
        await fake.drop_connections(PERSONA_TOKEN)
        # Posted while the socket is down: RESUME must replay it.
        await fake.post_message(world.general, world.alice, "did you miss me?")
        await fake.wait_for(lambda: resumed and inbox)
        assert [m.content for m in inbox] == ["did you miss me?"]
