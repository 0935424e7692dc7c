"""Photos on Discord, end to end: a photo posted to a feed gets comments whose requests carry it (as a
shrunk data URL, fetched once from the fake CDN); a model that cannot see gets the placeholder and is
told so; a file over the limit is named, never fetched."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from tests.discord_world import running
from tests.fakes.discord import FakeDiscord
from tests.fakes.openai_server import FakeOpenAI
from tests.images_util import decoded, jpeg
from tests.test_discord_feed import FEEDS, FeedWorld, followers

VISION = {"model": "gpt-4o-mini", "image_max_side": 256}


@pytest_asyncio.fixture
async def world(tmp_path: Path) -> AsyncIterator[FeedWorld]:
    async with FakeDiscord() as fake, FakeOpenAI() as llm:
        yield FeedWorld(fake, llm, tmp_path)


@pytest_asyncio.fixture
async def blind_world(tmp_path: Path) -> AsyncIterator[FeedWorld]:
    # A text-only model refuses image parts with a 400, as OpenAI's do.
    async with FakeDiscord() as fake, FakeOpenAI(vision=False) as llm:
        yield FeedWorld(fake, llm, tmp_path)


async def test_a_photo_only_post_gets_comments_that_see_the_photo(world: FeedWorld) -> None:
    fake = world.fake
    async with running(world, followers(), feeds=FEEDS, llm=VISION):
        cat = fake.upload("cat.jpg", jpeg(1600, 1200), "image/jpeg", description="my new cat")
        post = await fake.post_message(world.ideas, world.alice, "", attachments=[cat])
        (thread,) = await fake.wait_for(lambda: fake.threads(world.ideas))
        assert thread["id"] == post["id"] and thread["name"] == "my new cat"
        comments = await world.comments(thread)
        assert len({world.author_of(m) for m in comments}) == 3
        assert len(world.llm.requests) == 3
        for body in world.llm.requests:
            last = body["messages"][-1]
            text, image = last["content"]
            assert "[photo: 'my new cat']" in text["text"] and "cannot see" not in json.dumps(body)
            assert image["image_url"]["detail"] == "auto"
            assert decoded(image["image_url"]["url"]).size == (256, 192)  # shrunk to image_max_side
        # Fetched once from the CDN for the three comments (they are written one after another).
        assert fake.cdn.hits == [cat["id"]]


async def test_a_model_that_cannot_see_gets_the_placeholder_and_is_told_so(blind_world: FeedWorld) -> None:
    world, fake = blind_world, blind_world.fake
    async with running(world, followers(), feeds=FEEDS, llm={"model": "gpt-3.5-turbo"}):
        cat = fake.upload("cat.jpg", jpeg(64, 48), "image/jpeg", description="my new cat")
        await fake.post_message(world.ideas, world.alice, "", attachments=[cat])
        (thread,) = await fake.wait_for(lambda: fake.threads(world.ideas))
        await world.comments(thread)
        for body in world.llm.requests:
            assert all(isinstance(m["content"], str) for m in body["messages"])
            assert "[photo: 'my new cat', you cannot see images]" in body["messages"][-1]["content"]
            assert "say honestly that you cannot see images" in body["messages"][0]["content"]
        assert world.llm.images == [] and fake.cdn.hits == []  # nothing fetched for a model that cannot see


async def test_a_file_over_the_limit_is_named_and_never_fetched(world: FeedWorld) -> None:
    fake = world.fake
    async with running(world, followers(), feeds=FEEDS, llm={**VISION, "image_max_bytes": 1_000_000}):
        big = fake.upload("huge.png", b"\x89PNG" + b"\0" * 2_000_000, "image/png")
        clip = fake.upload("clip.mp4", b"\0" * 40_000, "video/mp4")
        await fake.post_message(world.ideas, world.alice, "look", attachments=[big, clip])
        (thread,) = await fake.wait_for(lambda: fake.threads(world.ideas))
        await world.comments(thread)
        last = world.llm.requests[0]["messages"][-1]["content"]
        assert "[a 2 MB image]" in last and "[a 40 kB video]" in last
        assert world.llm.images == [] and fake.cdn.hits == []


async def test_an_image_link_is_seen_through_discords_media_proxy_and_other_hosts_are_refused(
    world: FeedWorld,
) -> None:
    fake = world.fake
    async with running(world, followers(), feeds=FEEDS, llm=VISION):
        cached = fake.upload("cat.png", jpeg(400, 300), "image/png")  # Discord's proxy copy of the link
        embeds = [
            {
                "type": "image",
                "url": "https://example.com/cat.png",
                "thumbnail": {
                    "url": "https://example.com/cat.png",
                    "proxy_url": cached["url"],
                    "width": 400,
                    "height": 300,
                },
            },
            {
                "type": "image",
                "url": "https://example.com/dog.png",
                "thumbnail": {
                    "url": "https://example.com/dog.png",
                    "proxy_url": "https://example.com/dog.png",
                    "width": 40,
                    "height": 30,
                },
            },
        ]
        await fake.post_message(world.ideas, world.alice, "https://example.com/cat.png", embeds=embeds)
        (thread,) = await fake.wait_for(lambda: fake.threads(world.ideas))
        await world.comments(thread)
        # The proxied copy is seen; the other host is never asked (the fetch is refused before any request).
        assert len(world.llm.images) == 3 and {decoded(u).size for u in world.llm.images} == {(256, 192)}
        assert fake.cdn.hits == [cached["id"]]
