"""Discord end to end: the real Fleet and real discord.py clients against the fake Discord, and the
real openai SDK against the fake OpenAI endpoint. Nothing of ours is replaced."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest_asyncio
from aiohttp import web

from adapters.discord import CUT_MARK, DiscordAdapter, webhook_username
from bots.app import build_fleet
from bots.config import FleetConfig
from bots.core.fleet import Fleet
from bots.llm.openai import OpenAIClient
from bots.persona import Persona
from tests.fakes.discord import Call, FakeDiscord, point_discord_py_at
from tests.fakes.openai_server import FakeOpenAI, Truncated, _sse

HOST_TOKEN = "host-token"
TOKENS = {"skeptic": "skeptic-token", "optimist": "optimist-token"}
AVATAR = "https://example.invalid/realist.png"
JsonDict = dict[str, Any]


def make_persona(pid: str, name: str, *, token: str = "", **extra: Any) -> Persona:
    data: JsonDict = {
        "id": pid,
        "name": name,
        "prompt": f"You are {pid}.",
        "bio": f"the {pid}",
        "triggers": [{"mention": True}, {"reply": True}, {"command": True}],
        **extra,
    }
    if token:
        data["platforms"] = {"discord": {"token": token}}
    return Persona.model_validate(data)


def default_personas() -> list[Persona]:
    return [
        make_persona("skeptic", "Skeptic", token=TOKENS["skeptic"]),
        make_persona(
            "optimist", "Optimist", token=TOKENS["optimist"], reactions=[{"keywords": ["great"], "emoji": "🎉"}]
        ),
        make_persona("realist", "The Realist", avatar=AVATAR, reactions=[{"keywords": ["hmm"], "emoji": "🤔"}]),
        make_persona("nerd", "Discord Nerd"),
    ]


def speaker(body: JsonDict) -> str:
    """Which persona a request is for: its system prompt starts with "You are <id>."."""
    found = re.match(r"You are ([a-z_-]+)\.", body["messages"][0]["content"])
    return found.group(1) if found else "someone"


def says(body: JsonDict) -> str:
    return f"{speaker(body)} here: noted."


class TimedDiscord(FakeDiscord):
    """The fake, with the arrival time of each request (to check edit pacing)."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived: dict[int, float] = {}

    async def _record(self, request: web.Request) -> Call:
        call = await super()._record(request)
        self.arrived[id(call)] = time.monotonic()
        return call


class SlowOpenAI(FakeOpenAI):
    """Streams word by word with a pause between words, as a real model does (the base fake sends all
    at once). A Truncated behaviour stops halfway without a finish reason."""

    gap = 0.2

    async def _stream(self, request: web.Request, call: Any, cut: Truncated | None) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        words = re.findall(r"\S+\s*", call.text)
        if cut is not None:
            words = words[: len(words) // 2]
        for n, word in enumerate(words):
            finish = "stop" if cut is None and n == len(words) - 1 else None
            choice = {"index": 0, "delta": {"content": word}, "logprobs": None, "finish_reason": finish}
            await resp.write(_sse(call.chunk([choice])))
            await asyncio.sleep(self.gap)
        if cut is None:
            await resp.write(_sse("[DONE]"))
        await resp.write_eof()
        return resp


@dataclass
class World:
    fake: FakeDiscord
    llm: FakeOpenAI
    tmp: Path

    def __post_init__(self) -> None:
        fake = self.fake
        self.host = fake.add_bot(HOST_TOKEN, "Botfleet")
        self.bots = {pid: fake.add_bot(token, pid.title()) for pid, token in TOKENS.items()}
        self.guild = fake.add_guild("Test Server")
        self.general = fake.add_channel(self.guild, "general")
        self.forum = fake.add_channel(self.guild, "questions", type=15)
        self.alice = fake.add_user("alice")

    def bot_id(self, pid: str) -> str:
        return str(self.bots[pid]["id"])

    def persona_messages(self, channel: JsonDict | str) -> list[JsonDict]:
        """What personas said there: own accounts' messages and webhook messages (not command answers)."""
        own = {b["id"] for b in self.bots.values()}
        return [
            m
            for m in self.fake.messages(channel)
            if m["author"]["id"] in own or (m.get("webhook_id") and "interaction_metadata" not in m)
        ]

    def author_of(self, message: JsonDict) -> str:
        """The persona behind a message: an own account's id, or the webhook's override name."""
        if message.get("webhook_id"):
            return f"hook:{message['author']['username']}"
        return next((pid for pid, bot in self.bots.items() if bot["id"] == message["author"]["id"]), "host")


@pytest_asyncio.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with FakeDiscord() as fake, FakeOpenAI(reply=says) as llm:
        yield World(fake, llm, tmp_path)


@contextlib.asynccontextmanager
async def running(
    world: World,
    personas: list[Persona] | None = None,
    *,
    discord: JsonDict | None = None,
    fleet: JsonDict | None = None,
    feeds: JsonDict | None = None,
    llm: JsonDict | None = None,
    about: JsonDict | None = None,
    seed: int = 7,
    command_state: Path | None = None,
) -> AsyncIterator[tuple[Fleet, DiscordAdapter]]:
    """A fleet built as bots.app builds it, with the Discord adapter pointed at the fake by config."""
    fake = world.fake
    cfg = FleetConfig.model_validate(
        {
            "llm": {"provider": "openai", "model": "fake-gpt", "timeout_seconds": 5, "max_retries": 0, **(llm or {})},
            "fleet": {"reply_delay_seconds": [0, 0], **(fleet or {})},
            "adapters": {
                "discord": {
                    "token": HOST_TOKEN,
                    "api_base_url": fake.api_base,
                    "gateway_url": fake.gateway_url,
                    **(discord or {}),
                }
            },
            "feeds": {"discord": [], **(feeds or {})},
            # The disclosure line would end every first reply; the tests compare exact words.
            "about": {"disclosure": "", **(about or {})},
        }
    )
    personas = default_personas() if personas is None else personas
    client = OpenAIClient(
        api_key="test-key", base_url=world.llm.base_url, timeout=5, max_retries=0, streaming=cfg.llm.stream
    )
    fleet_ = build_fleet(cfg, personas, llm=client, rng=random.Random(seed))
    adapter = DiscordAdapter(
        cfg.adapters.discord,
        personas,
        command_state=command_state or world.tmp / "commands.json",
        guild_ready_timeout=0.05,
    )
    fleet_.attach(adapter)
    # The adapter sets discord.py's process-wide URLs from its config; this puts them back afterwards.
    with point_discord_py_at(fake):
        await fleet_.start()
        try:
            yield fleet_, adapter
        finally:
            await fleet_.stop(2)


async def settle(seconds: float = 0.4) -> None:
    """Give replies that should NOT happen the time they would need to show up."""
    await asyncio.sleep(seconds)


def writes(fake: FakeDiscord) -> list[Call]:
    """Every request that creates or edits a message, through an account or a webhook."""
    pattern = re.compile(r"^/channels/\d+/messages(/\d+)?$|^/webhooks/\d+/[^/]+(/messages/\d+)?$")
    return [c for c in fake.calls if c.method in ("POST", "PATCH") and pattern.search(c.path)]


# --- receiving and replying ---------------------------------------------------------------------------


async def test_a_mention_gets_one_reply_from_that_account_referencing_the_message(world: World) -> None:
    fake, skeptic = world.fake, world.bot_id("skeptic")
    async with running(world) as (fleet, _):
        posted = await fake.post_message(world.general, world.alice, f"<@{skeptic}> is this legit?")
        (reply,) = await fake.wait_for(lambda: world.persona_messages(world.general))
        assert reply["author"]["id"] == skeptic and reply["content"] == "skeptic here: noted."
        assert reply["message_reference"]["message_id"] == posted["id"]
        assert reply["mentions"] == []  # reply_ping is off: not even alice is pinged
        typing = fake.calls_to("POST", rf"^/channels/{world.general['id']}/typing$")
        assert typing and typing[0].bot_id == int(skeptic)
        # Four clients saw the message and the echo of the reply; one answer, and the echo is not a turn.
        await settle()
        assert len(world.persona_messages(world.general)) == 1
        assert fleet.persona_of("discord", reply["id"]) == "skeptic"

        # A reply to the persona's message, with no mention at all, still reaches it.
        await fake.post_message(world.general, world.alice, "why though", reply_to=reply, mentions=[])
        second = await fake.wait_for(lambda: world.persona_messages(world.general)[1:])
        assert second[0]["author"]["id"] == skeptic
        assert "alice: why though" in json.dumps(world.llm.requests[-1]["messages"])


async def test_webhook_personas_speak_with_name_and_avatar_and_survive_a_deleted_webhook(world: World) -> None:
    fake = world.fake
    async with running(world):
        posted = await fake.post_message(world.general, world.alice, "realist, what do you make of it?")
        (said,) = await fake.wait_for(lambda: world.persona_messages(world.general))
        (hook,) = fake.channel_webhooks(world.general)
        assert said["webhook_id"] == hook["id"] and said["author"]["username"] == "The Realist"
        (call,) = fake.calls_to("POST", rf"^/webhooks/{hook['id']}/")
        assert call.json["username"] == "The Realist" and call.json["avatar_url"] == AVATAR
        assert call.json["allowed_mentions"] == {"parse": []}
        # Webhooks cannot reply: the answer names who it answers, without pinging them.
        assert said["content"] == f"-# ↪ <@{world.alice['id']}>\nrealist here: noted."
        assert said["mentions"] == [] and posted["id"] != said["id"]

        # A name Discord refuses on webhooks is adjusted, not dropped.
        await fake.post_message(world.general, world.alice, "nerd, your take?")
        await fake.wait_for(lambda: len(world.persona_messages(world.general)) == 2)
        assert world.persona_messages(world.general)[1]["author"]["username"] == "Dis-cord Nerd"

        # Replying to a webhook persona's message reaches that persona.
        await fake.post_message(world.general, world.alice, "go on", reply_to=said, mentions=[])
        await fake.wait_for(lambda: len(world.persona_messages(world.general)) == 3)
        assert world.persona_messages(world.general)[2]["author"]["username"] == "The Realist"

        # Someone deletes the webhook: the next send makes a new one and still arrives.
        fake.delete_webhook(hook["id"])
        await fake.post_message(world.general, world.alice, "realist, still there?")
        await fake.wait_for(lambda: len(world.persona_messages(world.general)) == 4)
        (new_hook,) = fake.channel_webhooks(world.general)
        assert new_hook["id"] != hook["id"]
        assert world.persona_messages(world.general)[3]["webhook_id"] == new_hook["id"]
        await settle()
        assert len(world.persona_messages(world.general)) == 4  # webhook echoes are not answered


async def test_threads_get_answers_through_the_parents_webhook(world: World) -> None:
    fake = world.fake
    async with running(world):
        thread, _ = await fake.create_forum_post(world.forum, world.alice, "Boats", "realist, should I buy a boat?")
        (said,) = await fake.wait_for(lambda: world.persona_messages(thread))
        assert said["author"]["username"] == "The Realist"
        (hook,) = fake.channel_webhooks(world.forum)
        (call,) = fake.calls_to("POST", rf"^/webhooks/{hook['id']}/")
        assert call.query["thread_id"] == thread["id"]
        # The forum post's starter is the thread itself: no "replying to" line there.
        assert said["content"] == "realist here: noted."


async def test_keyword_reactions_land_on_the_message_from_the_right_account(world: World) -> None:
    fake = world.fake
    async with running(world):
        posted = await fake.post_message(world.general, world.alice, "great news everyone, hmm")
        await fake.wait_for(lambda: len(fake.reactions) == 2)
        got = {(r.emoji, r.user_id) for r in fake.reactions if r.message_id == int(posted["id"])}
        # Own accounts react as themselves; webhook personas' reactions come from the host bot.
        assert got == {("🎉", int(world.bot_id("optimist"))), ("🤔", int(world.host["id"]))}


async def test_reply_ping_pings_only_the_person_answered(world: World) -> None:
    fake, alice = world.fake, world.alice["id"]
    async with running(world, discord={"reply_ping": True}):
        await fake.post_message(world.general, world.alice, f"<@{world.bot_id('skeptic')}> and realist, ping me")
        said = await fake.wait_for(lambda: (m := world.persona_messages(world.general)) and len(m) == 2 and m)
        assert [[u["id"] for u in m["mentions"]] for m in said] == [[alice], [alice]]
        assert all(m["mention_everyone"] is False and m["mention_roles"] == [] for m in said)


async def test_accounts_connect_and_disconnect_and_any_account_can_still_send(world: World) -> None:
    fake = world.fake
    everyone = {int(world.host["id"]), *(int(b["id"]) for b in world.bots.values())}
    async with running(world) as (_, adapter):
        assert sorted(adapter.accounts()) == ["discord:host", "discord:optimist", "discord:skeptic"]
        assert fake.connected_bot_ids() == everyone
        # Another process holds the skeptic's gateway lease: this one only sends as it.
        await adapter.disconnect("discord:skeptic")
        assert fake.connected_bot_ids() == everyone - {int(world.bot_id("skeptic"))}
        await fake.post_message(world.general, world.alice, f"<@{world.bot_id('skeptic')}> are you there?")
        (said,) = await fake.wait_for(lambda: world.persona_messages(world.general))
        assert said["author"]["id"] == world.bot_id("skeptic")
        assert await adapter.connect("discord:skeptic") and fake.connected_bot_ids() == everyone

        # Bots outside the fleet are not answered.
        other = fake.add_bot("other-token", "Stranger")
        await fake.post_message(world.general, other, f"<@{world.bot_id('skeptic')}> hello fellow bot")
        await settle()
        assert len(world.persona_messages(world.general)) == 1
    assert fake.connected_bot_ids() == set()  # stop() closed every client


def dm_personas() -> list[Persona]:
    """The skeptic (own account) and the realist (webhook persona) answer DMs; the optimist does not."""
    dm = [{"mention": True}, {"reply": True}, {"dm": True}]
    return [
        make_persona("skeptic", "Skeptic", token=TOKENS["skeptic"], triggers=dm),
        make_persona("optimist", "Optimist", token=TOKENS["optimist"]),
        make_persona("realist", "The Realist", avatar=AVATAR, triggers=dm),
    ]


async def test_a_dm_to_a_personas_own_account_is_answered_there_by_that_account(world: World) -> None:
    fake, skeptic = world.fake, world.bot_id("skeptic")
    async with running(world, dm_personas()):
        posted = await fake.post_dm(skeptic, world.alice, "between us, is it legit?")
        dm = fake.dm_channel(skeptic, world.alice)
        (said,) = await fake.wait_for(lambda: fake.messages(dm, author=skeptic))
        assert said["content"] == "skeptic here: noted."
        assert said["message_reference"]["message_id"] == posted["id"] and said["mentions"] == []
        (call,) = [c for c in writes(fake) if c.method == "POST"]
        assert call.path == f"/channels/{dm['id']}/messages" and call.bot_id == int(skeptic)
        assert call.json["allowed_mentions"] == {"parse": []}
        await settle()
        # Nobody else saw it, so nobody else answered; and the echo of the answer is not a turn.
        assert [m["author"]["id"] for m in fake.messages(dm)] == [world.alice["id"], skeptic]
        assert not fake.channel_webhooks(world.general) and not fake.unhandled

        # A DM to an account whose persona takes no DMs is not answered.
        optimist = world.bot_id("optimist")
        await fake.post_dm(optimist, world.alice, "and you?")
        await settle()
        assert not fake.messages(fake.dm_channel(optimist, world.alice), author=optimist)


async def test_a_dm_to_the_host_is_answered_through_the_host_by_the_dm_personas(world: World) -> None:
    fake, host = world.fake, world.host["id"]
    async with running(world, dm_personas()):
        await fake.post_dm(host, world.alice, "anyone around?")
        dm = fake.dm_channel(host, world.alice)
        said = await fake.wait_for(lambda: (m := fake.messages(dm, author=host)) and len(m) == 2 and m)
        await settle()
        # Webhooks do not exist in DMs, and an own account cannot write in the host's DM: both
        # personas answer as the host, each with its name in bold.
        assert sorted(m["content"] for m in fake.messages(dm, author=host)) == [
            "**Skeptic:** skeptic here: noted.",
            "**The Realist:** realist here: noted.",
        ]
        assert all(m["mentions"] == [] and "webhook_id" not in m for m in said)
        posts = [c for c in writes(fake) if c.method == "POST"]
        assert {(c.path, c.bot_id) for c in posts} == {(f"/channels/{dm['id']}/messages", int(host))}
        assert all(c.json["allowed_mentions"] == {"parse": []} for c in posts) and len(posts) == 2
        # No account but the host touched the DM, and no webhook was looked for.
        assert {c.bot_id for c in fake.calls if dm["id"] in c.path} == {int(host)}
        assert not fake.channel_webhooks(world.general) and not fake.denied and not fake.unhandled


# --- slash commands -----------------------------------------------------------------------------------


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
        assert panel.callback_types == [5]  # deferred at once
        intro = fake.message(panel.original_message_id or 0)
        assert intro["content"] == "**alice** asked the panel: Should I buy a boat?"
        assert len({world.author_of(m) for m in answers}) == len(answers) >= 3
        for m in answers:
            if m.get("webhook_id"):
                assert m["content"].startswith(f"-# ↪ <@{world.alice['id']}>")
            else:
                assert m["message_reference"]["message_id"] == intro["id"]
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

        def answers_to_ask() -> list[JsonDict]:
            # A late panel answer may still arrive: only what replies to /ask's message counts here.
            said = world.persona_messages(world.general)[before:]
            return [
                m for m in said if (m.get("message_reference") or {}).get("message_id") == str(ask.original_message_id)
            ]

        new = await fake.wait_for(answers_to_ask)
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


# --- persona chains, mention safety, long and streamed replies ------------------------------------------


async def test_two_own_account_personas_naming_each_other_stop_at_max_bot_chain(world: World) -> None:
    fake = world.fake
    world.llm.reply = lambda body: "Optimist, surely not?" if speaker(body) == "skeptic" else "Skeptic, cheer up!"
    async with running(world, fleet={"max_bot_chain": 2}):
        await fake.post_message(world.general, world.alice, f"<@{world.bot_id('skeptic')}> thoughts?")
        await fake.wait_for(lambda: len(world.persona_messages(world.general)) >= 3)
        await settle(0.8)
        said = [world.author_of(m) for m in world.persona_messages(world.general)]
        assert said == ["skeptic", "optimist", "skeptic"]


async def test_model_output_pings_nobody_on_sends_edits_and_webhook_sends(tmp_path: Path) -> None:
    loud = "@everyone look <@&123> <@456> " + " ".join(f"word{i}" for i in range(10))
    async with FakeDiscord() as fake, SlowOpenAI(reply=lambda body: loud) as llm:
        world = World(fake, llm, tmp_path)
        async with running(world):
            await fake.post_message(world.general, world.alice, f"<@{world.bot_id('skeptic')}> and realist: news?")
            await fake.wait_for(lambda: len([c for c in writes(fake) if c.method == "PATCH"]) >= 4, timeout=10)
            await fake.wait_for(lambda: all(len(m["content"]) > 60 for m in world.persona_messages(world.general)))
        calls = writes(fake)
        kinds = {(c.method, "webhooks" in c.path) for c in calls}
        assert kinds == {("POST", False), ("PATCH", False), ("POST", True), ("PATCH", True)}
        for call in calls:
            assert call.json["allowed_mentions"] == {"parse": []}, call
        for m in world.persona_messages(world.general):
            assert m["mentions"] == [] and m["mention_roles"] == [] and m["mention_everyone"] is False
            assert "<@" not in m["content"].split("\n", 1)[-1]  # the words are defused as well


async def test_a_2500_character_reply_arrives_as_two_messages(world: World) -> None:
    fake = world.fake
    long = " ".join(f"Sentence number {i} makes the answer longer." for i in range(60))
    assert 2400 < len(long) < 2900
    world.llm.reply = lambda body: long
    async with running(world):
        posted = await fake.post_message(world.general, world.alice, f"<@{world.bot_id('skeptic')}> explain")
        first, second = await fake.wait_for(lambda: (m := world.persona_messages(world.general)) and len(m) == 2 and m)
        assert len(first["content"]) <= 2000 and len(second["content"]) <= 2000
        assert f"{first['content']} {second['content']}" == long
        assert first["message_reference"]["message_id"] == posted["id"] and "message_reference" not in second


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


async def test_streaming_edits_at_most_once_a_second_and_a_cut_off_stream_is_marked(tmp_path: Path) -> None:
    text = " ".join(f"step{i}" for i in range(14))
    async with TimedDiscord() as fake, SlowOpenAI(reply=lambda body: text) as llm:
        world = World(fake, llm, tmp_path)
        async with running(world) as (fleet, _):
            skeptic = world.bot_id("skeptic")
            await fake.post_message(world.general, world.alice, f"<@{skeptic}> go slowly")
            await fake.wait_for(
                lambda: (m := world.persona_messages(world.general)) and m[0]["content"] == text, timeout=10
            )
            (message,) = world.persona_messages(world.general)
            shown = [c for c in writes(fake) if c.bot_id == int(skeptic)]
            assert [c.method for c in shown][:2] == ["POST", "PATCH"] and len(shown) >= 3
            times = [fake.arrived[id(c)] for c in shown]
            assert all(b - a >= 0.9 for a, b in itertools.pairwise(times)), times
            # Fed back as the persona's turn once the last edit is done.
            await fake.wait_for(lambda: fleet.persona_of("discord", message["id"]) == "skeptic")

            llm.script(Truncated())
            await fake.post_message(world.general, world.alice, f"<@{skeptic}> again")
            cut = await fake.wait_for(
                lambda: (m := world.persona_messages(world.general)[1:]) and m[0]["content"].endswith(CUT_MARK) and m,
                timeout=10,
            )
            assert cut[0]["content"].startswith("step0 step1")
            # What was shown stays in the conversation, without the mark (the model must not learn to write it).
            await fake.wait_for(lambda: fleet.persona_of("discord", cut[0]["id"]) == "skeptic")
            history = await fleet.store.history(f"discord:{world.general['id']}", 20)
            (turn,) = [t for t in history if t.message_id == cut[0]["id"]]
            assert turn.text == cut[0]["content"].removesuffix(f" {CUT_MARK}")


def test_webhook_names_are_adjusted_to_what_discord_accepts() -> None:
    assert webhook_username("Discord Nerd") == "Dis-cord Nerd"
    assert webhook_username("clyde's DISCORD pal") == "cly-de's DIS-CORD pal"
    assert webhook_username("x" * 100) == "x" * 80
    assert webhook_username("  ", "nerd") == "nerd"
