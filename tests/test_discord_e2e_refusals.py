"""Discord end to end, when Discord says no: channels that refuse us, webhooks refused in a forum, and
revoked, refused or rejected tokens. The world is in tests/discord_world.py."""

from __future__ import annotations

import logging
from typing import Any

from tests.discord_world import TOKENS, World, default_personas, make_persona, running, settle, world

__all__ = ["world"]  # the fixture, from discord_world.py


async def test_a_channel_that_refuses_us_is_skipped_without_retries(world: World, caplog: Any) -> None:
    fake = world.fake
    locked = fake.add_channel(world.guild, "locked")
    fake.deny_channel(locked)
    caplog.set_level(logging.WARNING, "botfleet.discord")
    async with running(world):
        for text in (f"<@{world.bot_id('skeptic')}> hello?", "realist, hello?", f"<@{world.bot_id('skeptic')}> hi"):
            await fake.post_message(locked, world.alice, text)
        await settle(0.8)
        assert fake.messages(locked, author=world.bot_id("skeptic")) == []
        assert [(c.path, c.bot_id) for c in fake.denied] == [
            (f"/channels/{locked['id']}/typing", int(world.bot_id("skeptic"))),
            (f"/channels/{locked['id']}/typing", int(world.host["id"])),
        ]
        assert world.llm.requests == []  # found out before paying for a reply
        skipped = [r for r in caplog.records if "skipping that channel" in r.getMessage()]
        assert len(skipped) == 2
        # The rest of the server is unaffected.
        await fake.post_message(world.general, world.alice, f"<@{world.bot_id('skeptic')}> and here?")
        await fake.wait_for(lambda: world.persona_messages(world.general))


async def test_threads_of_a_channel_that_refuses_webhooks_cost_no_llm_call_and_one_log_line(
    world: World, caplog: Any
) -> None:
    fake = world.fake
    fake.fail_next("POST", rf"^/channels/{world.forum['id']}/webhooks$", 403, times=10, code=50013)
    caplog.set_level(logging.WARNING, "botfleet.discord")
    async with running(world):
        for title in ("Boats", "Cars"):
            await fake.create_forum_post(world.forum, world.alice, title, f"realist, should I buy {title.lower()}?")
        await settle(0.8)
        assert world.llm.requests == []  # found out before paying for a reply
        assert len(fake.calls_to("POST", rf"^/channels/{world.forum['id']}/webhooks$")) == 1
        refused = [r.getMessage() for r in caplog.records if "manage webhooks" in r.getMessage()]
        assert len(refused) == 1 and str(world.forum["id"]) in refused[0]
        # Own accounts do not need the webhook.
        thread, _ = await fake.create_forum_post(world.forum, world.alice, "Bikes", f"<@{world.bot_id('skeptic')}> ?")
        await fake.wait_for(lambda: world.persona_messages(thread))


async def test_a_token_revoked_after_start_up_is_reported_and_not_tried_again(world: World, caplog: Any) -> None:
    fake = world.fake
    caplog.set_level(logging.ERROR, "botfleet.discord")
    async with running(world) as (_, adapter):
        await adapter.disconnect("discord:skeptic")
        fake.revoke_token(TOKENS["skeptic"])
        assert not await adapter.connect("discord:skeptic")
        assert "401" in adapter.failed["discord:skeptic"]
        logins = len(fake.calls)
        assert not await adapter.connect("discord:skeptic")
        assert len(fake.calls) == logins  # no second try
        # Its persona speaks through the host's webhook now.
        await fake.post_message(world.general, world.alice, "skeptic, are you there?")
        (said,) = await fake.wait_for(lambda: world.persona_messages(world.general))
        assert said["author"]["username"] == "Skeptic" and said.get("webhook_id")
    assert any("discord:skeptic" in r.getMessage() and "401" in r.getMessage() for r in caplog.records)


async def test_a_token_the_gateway_refuses_at_start_up_is_in_the_report(world: World) -> None:
    fake = world.fake
    fake.revoke_token(TOKENS["optimist"], rest=False)
    async with running(world) as (_, adapter):
        assert "4004" in adapter.failed["discord:optimist"]
        assert not await adapter.connect("discord:optimist")
        assert int(world.bot_id("optimist")) not in fake.connected_bot_ids()
        # A token refused while connected: the lost gateway is reported the same way.
        fake.revoke_token(TOKENS["skeptic"], rest=False)
        await fake.drop_connections(world.bots["skeptic"], code=4004)
        await fake.wait_for(lambda: "discord:skeptic" in adapter.failed)
        assert "4004" in adapter.failed["discord:skeptic"] and not await adapter.connect("discord:skeptic")


async def test_a_rejected_token_is_reported_and_the_rest_of_the_fleet_runs(world: World, caplog: Any) -> None:
    fake = world.fake
    personas = [*default_personas(), make_persona("ghost", "Ghost", token="not-a-real-token")]
    caplog.set_level(logging.ERROR, "botfleet.discord")
    async with running(world, personas) as (_, adapter):
        assert "discord:ghost" in adapter.failed and not await adapter.connect("discord:ghost")
        assert any("discord:ghost" in r.getMessage() and "401" in r.getMessage() for r in caplog.records)
        assert fake.connected_bot_ids() == {int(world.host["id"]), *(int(b["id"]) for b in world.bots.values())}
        await fake.post_message(world.general, world.alice, f"<@{world.bot_id('skeptic')}> still up?")
        await fake.wait_for(lambda: world.persona_messages(world.general))
        # Its persona is not lost: it speaks through the host's webhook.
        await fake.post_message(world.general, world.alice, "ghost, are you there?")
        await fake.wait_for(
            lambda: any(m["author"]["username"] == "Ghost" for m in world.persona_messages(world.general))
        )
