"""Discord end to end, slash commands: the deferred /panel, /ask and its autocomplete, private notices,
and syncing commands only when they change. The world is in tests/discord_world.py."""

from __future__ import annotations

import json
import logging
from typing import Any

from tests.discord_world import HOST_TOKEN, JsonDict, World, running, settle, world

__all__ = ["world"]  # the fixture, from discord_world.py


def check_panel_answers(world: World, answers: list[JsonDict], intro: JsonDict) -> None:
    """One answer per persona; own accounts reply to the intro, webhooks (which cannot) name the asker."""
    assert len({world.author_of(m) for m in answers}) == len(answers) >= 3
    for m in answers:
        if m.get("webhook_id"):
            assert m["content"].startswith(f"-# ↪ <@{world.alice['id']}>")
        else:
            assert m["message_reference"]["message_id"] == intro["id"]


def replies_to(world: World, message_id: str, *, since: int) -> list[JsonDict]:
    """Persona messages in #general after the first ``since`` that reply to ``message_id``."""
    said = world.persona_messages(world.general)[since:]
    return [m for m in said if (m.get("message_reference") or {}).get("message_id") == message_id]


async def test_panel_is_deferred_then_several_personas_answer_and_ask_autocompletes(world: World) -> None:
    fake = world.fake
    async with running(world):
        app = int(world.host["id"])
        names = {c["name"] for c in fake.commands[(app, None)]}
        assert {
            "ask",
            "panel",
            "personas",
            "about",
            "optout",
            "optin",
            "forget",
            "mute",
            "unmute",
            "followers",
            "more",
        } <= names
        mute = next(c for c in fake.commands[(app, None)] if c["name"] == "mute")
        assert int(mute["default_member_permissions"]) == 1 << 13  # Manage Messages

        question = [{"name": "question", "type": 3, "value": "Should I buy a boat?"}]
        panel = await fake.send_interaction(HOST_TOKEN, world.general, world.alice, "panel", question)
        answers = await fake.wait_for(lambda: (m := world.persona_messages(world.general)) and len(m) >= 3 and m)
        assert answers  # narrows the type: wait_for returns the first truthy value
        assert panel.callback_types == [5]  # deferred at once
        intro = fake.message(panel.original_message_id or 0)
        assert intro["content"] == "**alice** asked the panel: Should I buy a boat?"
        check_panel_answers(world, answers, intro)
        panel_prompt = json.dumps(world.llm.requests[0]["messages"])
        assert "asked a panel" in panel_prompt and "Should I buy a boat?" in panel_prompt

        typed = [*question, {"name": "persona", "type": 3, "value": "sk", "focused": True}]
        auto = await fake.send_interaction(HOST_TOKEN, world.general, world.alice, "ask", typed, type=4)
        await fake.wait_for(lambda: auto.callbacks)
        assert auto.callback_types == [8]
        assert [c["value"] for c in auto.callbacks[0]["data"]["choices"]] == ["skeptic"]

        before = len(world.persona_messages(world.general))
        chosen = [*question, {"name": "persona", "type": 3, "value": "skeptic"}]
        ask = await fake.send_interaction(HOST_TOKEN, world.general, world.alice, "ask", chosen)
        await fake.wait_for(lambda: ask.original_message_id)
        # A late panel answer may still arrive: only what replies to /ask's message counts here.
        new = await fake.wait_for(lambda: replies_to(world, str(ask.original_message_id), since=before))
        assert ask.callback_types == [5] and [world.author_of(m) for m in new] == ["skeptic"]
        assert fake.message(ask.original_message_id or 0)["content"].startswith("**alice** asked Skeptic:")


async def test_notices_answer_the_interaction_privately_when_the_core_says_so(world: World) -> None:
    fake = world.fake
    async with running(world):
        optout = await fake.send_interaction(HOST_TOKEN, world.general, world.alice, "optout")
        await fake.wait_for(lambda: optout.callbacks and not optout.loading)
        answer = fake.message(optout.original_message_id or 0)
        assert answer["flags"] & 64 and "will not answer" in answer["content"]

        personas = await fake.send_interaction(HOST_TOKEN, world.general, world.alice, "personas")
        await fake.wait_for(lambda: personas.callbacks and not personas.loading)
        listing = fake.message(personas.original_message_id or 0)
        assert not listing["flags"] & 64 and "The Realist" in listing["content"]

        # The core ignores an opted-out user's other commands; the interaction still gets an answer.
        option = [{"name": "persona", "type": 3, "value": "skeptic"}]
        ignored = await fake.send_interaction(HOST_TOKEN, world.general, world.alice, "mute", option)
        await fake.wait_for(lambda: ignored.callbacks and not ignored.loading)
        assert "/optin" in fake.message(ignored.original_message_id or 0)["content"]

        optin = await fake.send_interaction(HOST_TOKEN, world.general, world.alice, "optin")
        await fake.wait_for(lambda: optin.callbacks and not optin.loading)
        # /mute needs Manage Messages: alice has none, so the core refuses, privately.
        mute = await fake.send_interaction(HOST_TOKEN, world.general, world.alice, "mute", option)
        await fake.wait_for(lambda: mute.callbacks and not mute.loading)
        refused = fake.message(mute.original_message_id or 0)
        assert refused["flags"] & 64 and "Only admins" in refused["content"]


async def test_commands_are_synced_only_when_their_definition_changes(world: World, caplog: Any) -> None:
    fake = world.fake
    scope = (int(world.host["id"]), None)
    commands = rf"^/applications/{world.host['id']}/commands$"
    async with running(world):
        pass
    async with running(world):
        pass
    assert fake.command_syncs == {scope: 1}
    assert len(fake.calls_to("GET", commands)) == 1  # the state file spared the second look

    # A fresh container (no state file) asks Discord, which has them already: no sync.
    fresh = world.tmp / "fresh" / "commands.json"
    async with running(world, command_state=fresh):
        pass
    assert fake.command_syncs == {scope: 1} and fresh.exists()
    assert len(fake.calls_to("GET", commands)) == 2

    # What Discord has differs (an older version of ours): synced again.
    fake.commands[scope][0]["description"] = "an older description"
    state = world.tmp / "commands.json"
    state.write_text(json.dumps({world.host["id"]: "an older definition"}))
    async with running(world):
        pass
    assert fake.command_syncs == {scope: 2}

    # A sync Discord refuses is logged, and the fleet starts anyway.
    caplog.set_level(logging.WARNING, "botfleet.discord")
    fake.commands[scope][0]["description"] = "an older description"
    fake.fail_next("PUT", commands, 400, code=50035, message="Invalid Form Body")
    async with running(world, command_state=world.tmp / "other" / "commands.json") as (_, adapter):
        assert await adapter.connect("discord:host")
    assert fake.command_syncs == {scope: 2}
    assert any("syncing slash commands failed" in r.getMessage() for r in caplog.records)


async def test_an_opted_out_users_panel_is_not_announced_and_gets_a_private_answer(world: World) -> None:
    fake = world.fake
    async with running(world):
        optout = await fake.send_interaction(HOST_TOKEN, world.general, world.alice, "optout")
        await fake.wait_for(lambda: optout.callbacks and not optout.loading)
        question = [{"name": "question", "type": 3, "value": "Should I buy a boat?"}]
        panel = await fake.send_interaction(HOST_TOKEN, world.general, world.alice, "panel", question)
        await fake.wait_for(lambda: panel.followup_ids)
        await settle()
        public = [m for m in fake.messages(world.general) if not m["flags"] & 64]
        assert not any("asked the panel" in m["content"] or "boat" in m["content"] for m in public)
        (answer,) = [fake.message(i) for i in panel.followup_ids]
        assert answer["flags"] & 64 and "opted out" in answer["content"]
        assert world.llm.requests == [] and world.persona_messages(world.general) == []
