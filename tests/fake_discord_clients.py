"""Real discord.py clients against the fake Discord: the world the tests/test_fake_discord*.py files share."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import discord
import pytest_asyncio

from tests.fakes.discord import FakeDiscord, point_discord_py_at

HOST_TOKEN = "host-token"
PERSONA_TOKEN = "persona-token"


class World:
    """The fake plus the handles the tests reach for."""

    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake
        self.host = fake.add_bot(HOST_TOKEN, "Host")
        self.persona = fake.add_bot(PERSONA_TOKEN, "Skeptic")
        self.guild = fake.add_guild("Test Server")
        self.general = fake.add_channel(self.guild, "general")
        self.forum = fake.add_channel(self.guild, "questions", type=15)
        self.alice = fake.add_user("alice")

    @property
    def general_id(self) -> int:
        return int(self.general["id"])


@pytest_asyncio.fixture
async def world() -> AsyncIterator[World]:
    """A started fake with discord.py pointed at it, and the world built in it; import it to use it."""
    async with FakeDiscord() as fake:
        with point_discord_py_at(fake):
            yield World(fake)


@contextlib.asynccontextmanager
async def running(
    token: str,
    *,
    message_content: bool = True,
    setup: Callable[[discord.Client], Any] | None = None,
    **options: Any,
) -> AsyncIterator[discord.Client]:
    """A real client connected to the fake, closed on the way out so no task or socket leaks; `options`
    go to discord.Client (shard_id and shard_count, say)."""
    intents = discord.Intents.default()
    intents.message_content = message_content
    # guild_ready_timeout is how long discord.py waits after the last GUILD_CREATE before on_ready.
    client = discord.Client(intents=intents, guild_ready_timeout=0.05, **options)
    if setup is not None:
        setup(client)
    await client.login(token)
    task = asyncio.create_task(client.connect())
    try:
        await asyncio.wait_for(client.wait_until_ready(), 5)
        yield client
    finally:
        await client.close()
        await task


def collect(client: discord.Client, event: str) -> list[Any]:
    """Record every ``event`` the client dispatches (single-argument events as the object itself)."""
    seen: list[Any] = []

    async def handler(*args: Any) -> None:
        seen.append(args[0] if len(args) == 1 else args)

    handler.__name__ = f"on_{event}"
    client.event(handler)
    return seen


def text_channel(client: discord.Client, channel_id: int) -> discord.TextChannel:
    channel = client.get_channel(channel_id)
    assert isinstance(channel, discord.TextChannel)
    return channel
