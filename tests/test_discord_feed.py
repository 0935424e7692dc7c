"""Feed mode on Discord, end to end: a forum post (or a post in a text channel configured as a feed)
gets comments from several AI followers inside its thread, spread over the feed's window."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest_asyncio

from bots.persona import Persona
from tests.discord_world import HOST_TOKEN, TOKENS, World, make_persona, running, speaker
from tests.fakes.discord import FakeDiscord
from tests.fakes.openai_server import FakeOpenAI

JsonDict = dict[str, Any]
FEEDS = {
    "discord": [
        {"channel": "questions", "comments": 3, "window_seconds": 2, "reactions": False},
        {"channel": "ideas", "comments": 3, "window_seconds": 2, "reactions": True},
    ]
}


def followers() -> list[Persona]:
    return [
        make_persona("skeptic", "Skeptic", token=TOKENS["skeptic"]),
        make_persona("optimist", "Optimist", token=TOKENS["optimist"]),
        make_persona("realist", "The Realist"),
        make_persona("nerd", "The Nerd"),
        make_persona("stoic", "The Stoic"),
    ]


class FeedWorld(World):
    def __post_init__(self) -> None:
        super().__post_init__()
        self.ideas = self.fake.add_channel(self.guild, "ideas")
        counter = itertools.count()
        self.llm.reply = lambda body: f"{speaker(body)} comment {next(counter)}."

    def comments(self, thread: JsonDict, n: int = 3) -> Any:
        return self.fake.wait_for(lambda: (m := self.persona_messages(thread)) and len(m) >= n and m, timeout=10)


@pytest_asyncio.fixture
async def world(tmp_path: Path) -> AsyncIterator[FeedWorld]:
    async with FakeDiscord() as fake, FakeOpenAI() as llm:
        yield FeedWorld(fake, llm, tmp_path)


def arrival(message: JsonDict) -> datetime:
    return datetime.fromisoformat(message["timestamp"])


async def test_a_forum_post_gets_three_staggered_comments_each_seeing_the_earlier_ones(world: FeedWorld) -> None:
    fake = world.fake
    # This seed spaces the comments about 0.6 s apart: each one is written after the one before is posted.
    async with running(world, followers(), feeds=FEEDS, seed=2):
        thread, starter = await fake.create_forum_post(
            world.forum, world.alice, "Should I quit my job?", "I have savings for a year."
        )
        assert starter["id"] == thread["id"]
        comments = await world.comments(thread)
        assert len({world.author_of(m) for m in comments}) == 3
        times = [arrival(m) for m in comments]
        assert times == sorted(times) and len(set(times)) == 3
        assert (times[-1] - times[0]).total_seconds() > 0.3  # spread over the window, not all at once
        # Comments sit in the thread, and need no "replying to": the thread is the post.
        assert all("message_reference" not in m and not m["content"].startswith("-#") for m in comments)
        prompts = [json.dumps(r["messages"]) for r in world.llm.requests]
        assert len(prompts) == 3
        assert "Should I quit my job?" in prompts[0] and "savings for a year" in prompts[0]
        assert "comment 0." in prompts[1]
        assert "comment 0." in prompts[2] and "comment 1." in prompts[2]

        # A reply to one comment gets an answer from the persona that wrote it.
        target = comments[1]
        await fake.post_message(thread, world.alice, "why do you say that?", reply_to=target, mentions=[])
        answers = await world.comments(thread, 4)
        assert world.author_of(answers[3]) == world.author_of(target)


async def test_a_text_channel_feed_opens_a_thread_on_each_post_and_comments_there(world: FeedWorld) -> None:
    fake = world.fake
    async with running(world, followers(), feeds=FEEDS):
        post = await fake.post_message(world.ideas, world.alice, "I'm thinking of learning Rust this summer")
        (thread,) = await fake.wait_for(lambda: fake.threads(world.ideas))
        assert thread["id"] == post["id"] and thread["name"] == "I'm thinking of learning Rust this summer"
        (opened,) = fake.calls_to("POST", rf"^/channels/{world.ideas['id']}/messages/{post['id']}/threads$")
        assert opened.bot_id == int(world.host["id"])
        comments = await world.comments(thread)
        assert len({world.author_of(m) for m in comments}) == 3
        assert world.persona_messages(world.ideas) == []  # nothing in the channel itself
        # Followers who do not comment may like the post: on the post itself, in the channel.
        likes = fake.calls_to("PUT", r"/reactions/")
        assert likes and {(c.path.split("/reactions")[0], c.status) for c in likes} == {
            (f"/channels/{world.ideas['id']}/messages/{post['id']}", 204)
        }
        hooks = fake.channel_webhooks(world.ideas)
        for call in fake.calls_to("POST", r"^/webhooks/\d+/"):
            if call.webhook_id in {int(h["id"]) for h in hooks}:
                assert call.query["thread_id"] == thread["id"]


async def test_followers_chosen_by_slash_command_comment_on_the_next_post(world: FeedWorld) -> None:
    fake = world.fake
    async with running(world, followers(), feeds=FEEDS):
        typing = {"name": "personas", "type": 3, "value": "realist ne", "focused": True}
        auto = await fake.send_interaction(HOST_TOKEN, world.general, world.alice, "followers", [typing], type=4)
        await fake.wait_for(lambda: auto.callbacks)
        assert [c["value"] for c in auto.callbacks[0]["data"]["choices"]] == ["realist nerd"]

        chosen = [{"name": "personas", "type": 3, "value": "realist nerd stoic"}]
        command = await fake.send_interaction(HOST_TOKEN, world.general, world.alice, "followers", chosen)
        await fake.wait_for(lambda: command.callbacks and not command.loading)
        answer = fake.message(command.original_message_id or 0)
        assert answer["flags"] & 64  # only alice sees it
        assert answer["content"] == "Your posts will get comments from: The Realist, The Nerd, The Stoic."

        thread, _ = await fake.create_forum_post(world.forum, world.alice, "New post", "Rate my bike?")
        comments = await world.comments(thread)
        assert {world.author_of(m) for m in comments} == {"hook:The Realist", "hook:The Nerd", "hook:The Stoic"}
