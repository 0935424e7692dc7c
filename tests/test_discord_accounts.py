"""Discord accounts as the fleet's leases see them (issue 11.13): the IDENTIFY budget Discord reports
for each token. Real Fleet, real discord.py, the fake Discord."""

from __future__ import annotations

from tests.discord_world import World, running, world

__all__ = ["world"]  # the fixture, from discord_world.py

SKEPTIC = "discord:skeptic"


async def test_connect_budget_is_what_discord_says_and_falls_with_each_connect(world: World) -> None:
    fake, skeptic = world.fake, world.bot_id("skeptic")
    fake.set_session_start_limit(skeptic, total=1000, remaining=40, reset_after=3_600_000)
    async with running(world) as (_, adapter):
        await fake.wait_for(lambda: int(skeptic) in fake.connected_bot_ids())
        # The fleet's start connected the account: one IDENTIFY spent.
        assert (await adapter.connect_budget(SKEPTIC) or ())[:2] == (39, 1000)

        await adapter.disconnect(SKEPTIC)
        assert await adapter.connect(SKEPTIC)
        assert fake.session_start_limit(skeptic)["remaining"] == 38
        assert (await adapter.connect_budget(SKEPTIC) or ())[:2] == (38, 1000)

        # Read briefly cached: leases may ask on every renewal without asking Discord each time.
        fake.set_session_start_limit(skeptic, total=1000, remaining=7)
        assert (await adapter.connect_budget(SKEPTIC) or ())[:2] == (38, 1000)


async def test_connect_budget_is_none_when_it_cannot_be_read(world: World) -> None:
    fake = world.fake
    async with running(world) as (_, adapter):
        assert await adapter.connect_budget("discord:nobody") is None
        fake.fail_next("GET", r"^/gateway/bot$", 403, code=50001, message="Missing Access")
        assert await adapter.connect_budget("discord:host") is None
        # A failure is not cached: the next read asks again.
        assert (await adapter.connect_budget("discord:host") or ())[:2] == (999, 1000)
