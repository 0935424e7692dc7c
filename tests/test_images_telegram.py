"""Photos on Telegram, end to end: a photo posted to a feed topic gets comments whose requests carry it
as a data URL (the largest size within the limit, fetched by getFile from the file route), and the bot
tokens in Telegram's file URLs never reach the model endpoint."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from telegram import Message as TgMessage

from adapters.telegram.photos import photos_of
from bots.config import LLMConfig
from tests.images_util import decoded, jpeg
from tests.telegram_world import TOKENS, telegram_fleet


async def test_a_photo_post_gets_comments_that_see_it_and_no_token_reaches_the_model(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    llm = {"model": "gpt-4o-mini", "image_max_side": 320, "image_max_bytes": 1_000_000}
    async with telegram_fleet(tmp_path, topic_feed=55, llm=llm) as w:
        small, medium, large = jpeg(90, 68, noisy=True), jpeg(640, 480, noisy=True), jpeg(1600, 1200, noisy=True)
        assert len(medium) < 1_000_000 < len(large)
        sizes = w.fake.photo_sizes(small, medium, large)
        said = await w.fake.user_posts_photo(w.group, w.alice, sizes, caption="my new cat", topic=55)
        plan = await w.handled(said, thread=55)
        assert plan.event.is_post and plan.event.has_image  # type: ignore[union-attr]
        comments = [s for s in w.fake.sent(w.gid) if s.reply_to_message_id == said["message_id"]]
        assert len(comments) == 2
        assert len(w.ai.requests) == 2
        for body in w.ai.requests:
            text, image = body["messages"][-1]["content"]
            assert "[photo: 'my new cat']" in text["text"]
            assert decoded(image["image_url"]["url"]).size == (320, 240)
        # The largest size within the limit, fetched once by getFile and the file route.
        assert w.fake.files.hits == ["photos/file_2.jpg"]
        assert len(w.fake.calls_to("getFile")) == 1
        sent_to_model = json.dumps(w.ai.requests)
        assert not any(token in sent_to_model or token.split(":")[1] in sent_to_model for token in TOKENS.values())
    # Nor into the logs, and no photo is ever logged.
    assert caplog.text and not any(token.split(":")[1] in caplog.text for token in TOKENS.values())
    assert "data:image" not in caplog.text and w.ai.images[0][22:80] not in caplog.text


async def test_a_photo_too_big_in_every_size_is_named_not_fetched(tmp_path: Path) -> None:
    llm = {"model": "gpt-4o-mini", "image_max_bytes": 10_000}
    async with telegram_fleet(tmp_path, topic_feed=55, llm=llm) as w:
        sizes = w.fake.photo_sizes(jpeg(640, 480, noisy=True))
        said = await w.fake.user_posts_photo(w.group, w.alice, sizes, topic=55)
        await w.handled(said, thread=55)
        assert w.ai.requests and w.ai.images == []
        assert "image]" in w.ai.requests[0]["messages"][-1]["content"]
        assert w.fake.files.hits == [] and w.fake.calls_to("getFile") == []


async def test_a_channel_photo_post_gets_comments_in_its_thread_that_see_it(tmp_path: Path) -> None:
    async with telegram_fleet(tmp_path, feed=True, llm={"model": "gpt-4o-mini", "image_max_side": 128}) as w:
        sizes = w.fake.photo_sizes(jpeg(400, 300))
        _, copy = await w.fake.channel_post(w.channel, "Sunset from the office", photo=sizes)
        assert copy is not None and "text" not in copy and copy["caption"] == "Sunset from the office"
        plan = await w.handled(copy, thread=copy["message_id"])
        assert plan.event.is_post and plan.event.has_image  # type: ignore[union-attr]
        comments = [s for s in w.fake.sent(w.gid) if s.reply_to_message_id == copy["message_id"]]
        assert len(comments) == 2 and len(w.ai.images) == 2
        assert all(decoded(url).size == (128, 96) for url in w.ai.images)


def test_image_documents_are_photos_and_other_media_are_named() -> None:
    base = {"message_id": 1, "date": 0, "chat": {"id": -1, "type": "group", "title": "g"}, "caption": "look"}
    doc = TgMessage.de_json(
        {**base, "document": {"file_id": "d1", "file_unique_id": "u1", "mime_type": "image/png", "file_size": 900}},
        None,
    )
    media = TgMessage.de_json(
        {
            **base,
            "video": {
                "file_id": "v",
                "file_unique_id": "v",
                "width": 1,
                "height": 1,
                "duration": 3,
                "file_size": 40_000_000,
            },
            "voice": {"file_id": "o", "file_unique_id": "o", "duration": 2},
        },
        None,
    )
    pdf = TgMessage.de_json(
        {
            **base,
            "document": {"file_id": "p", "file_unique_id": "p", "mime_type": "application/pdf", "file_name": "cv.pdf"},
        },
        None,
    )
    cfg = LLMConfig()
    (png,), () = photos_of(doc, "telegram:host", cfg)
    assert (png.mime, png.size, png.alt, png.ref, png.account) == ("image/png", 900, "look", "d1", "telegram:host")
    assert photos_of(media, "telegram:host", cfg) == ((), ("a 40 MB video", "a voice message"))
    assert photos_of(pdf, "telegram:host", cfg) == ((), ("a PDF document (cv.pdf)",))


async def test_an_album_is_one_post_so_followers_comment_once(tmp_path: Path) -> None:
    async with telegram_fleet(tmp_path, topic_feed=55, llm={"model": "gpt-4o-mini", "image_max_side": 64}) as w:
        first = await w.fake.user_posts_photo(
            w.group, w.alice, w.fake.photo_sizes(jpeg(80, 60)), caption="our trip", topic=55, album="A1"
        )
        second = await w.fake.user_posts_photo(w.group, w.alice, w.fake.photo_sizes(jpeg(60, 80)), topic=55, album="A1")
        assert (await w.handled(first, thread=55)).event.is_post  # type: ignore[union-attr]
        assert not (await w.handled(second, thread=55)).event.is_post  # type: ignore[union-attr]
        comments = [
            s for s in w.fake.sent(w.gid) if s.reply_to_message_id in (first["message_id"], second["message_id"])
        ]
        assert len(comments) == 2 and all(s.reply_to_message_id == first["message_id"] for s in comments)
