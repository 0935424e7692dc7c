"""Photos in the core: what a message keeps and names, the placeholder in history, who sees, the
`image` trigger, /forget and the claim payload, and a reply's request with and without sight."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from pydantic import ValidationError

from bots.config import LLMConfig
from bots.core.codec import decode_claim, encode_claim
from bots.core.events import Author, Command, ImagePart, Message
from bots.core.fleet import Fleet
from bots.core.gallery import Gallery
from bots.core.images import admit, describe_file, sees_images, turn_text
from bots.core.ports import Chunk, ImageUnavailable, LLMRequest
from bots.media.shrink import shrink
from tests.conftest import HUMAN, RecordingAdapter, make_fleet, msg, persona
from tests.images_util import jpeg

CAT = ImagePart("image/jpeg", 2000, "my new cat", ref="https://cdn.discordapp.com/a/cat.jpg")


@dataclass
class Recording:
    """An LLM client that keeps each request."""

    name: str = "openai"
    requests: list[LLMRequest] = field(default_factory=list)

    async def stream(self, request: LLMRequest) -> AsyncIterator[Chunk]:
        self.requests.append(request)
        yield Chunk(text="Nice.", finish_reason="stop")

    async def close(self) -> None:
        return None


@dataclass
class PhotoAdapter(RecordingAdapter):
    """A platform that hands photos over as bytes (as a web room's uploads do)."""

    fetched: list[ImagePart] = field(default_factory=list)

    async def image_url(self, part: ImagePart, max_side: int) -> str:
        self.fetched.append(part)
        if not part.data:
            raise ImageUnavailable("gone")
        return shrink(part.data, max_side)


def photo_fleet(model: str = "gpt-4o-mini", **llm: object) -> tuple[Fleet, PhotoAdapter, Recording]:
    client = Recording()
    fleet, _, _ = make_fleet(
        [persona("a", triggers=[{"image": True}, {"mention": True}])],
        llm=client,
        config={"llm": {"model": model, "image_max_side": 64, **llm}},
    )
    adapter = PhotoAdapter()
    fleet.attach(adapter)
    return fleet, adapter, client


def test_files_are_named_in_words() -> None:
    assert describe_file("video/mp4", 40_000_000) == "a 40 MB video"
    assert describe_file("audio/ogg", 3000) == "a 3 kB audio clip"
    assert describe_file("application/pdf") == "a PDF document"
    assert describe_file("application/zip", 0, "notes.zip") == "a file (notes.zip)"
    assert describe_file("image/jpeg", 8_000_000) == "an 8 MB image"


def test_a_message_keeps_photos_within_the_limits_and_names_the_rest() -> None:
    cfg = LLMConfig(images_per_message=2, image_max_bytes=1_000_000)
    big = ImagePart("image/png", 6_000_000)
    heic = ImagePart("image/heic", 2000)
    kept, named = admit([CAT, big, heic, CAT, CAT, CAT], cfg, ["a 40 MB video"])
    assert kept == (CAT, CAT)
    assert named == ("a 40 MB video", "a 6 MB image", "a 2 kB image", "2 more photos")


def test_history_keeps_a_placeholder_and_a_caption_is_said_once() -> None:
    m = msg("look at him", images=(CAT,), files=("a 40 MB video",))
    assert turn_text(m) == "look at him\n[photo: 'my new cat']\n[a 40 MB video]"
    captioned = msg("my new cat", images=(CAT,))
    assert turn_text(captioned) == "[photo: 'my new cat']"
    assert turn_text(msg("", images=(ImagePart("image/png", alt="it's [weird]"),))) == "[photo: 'it’s (weird)']"


@pytest.mark.parametrize(
    ("model", "sees"),
    [
        ("gpt-4o-mini", True),
        ("gpt-4.1-nano", True),
        ("llava:13b", True),
        ("llama3.2-vision", True),
        ("qwen2.5-vl-7b-instruct", True),
        ("Qwen/Qwen2-VL-2B-Instruct", True),
        ("gemma3:4b", True),
        ("qwen2.5vl:7b", True),
        ("Qwen/Qwen2.5-VL-7B-Instruct", True),
        ("minicpm-v", True),
        ("gpt-5-mini", True),
        ("gpt-3.5-turbo", False),
        ("llama3.1:8b", False),
        ("qwen2.5:7b", False),
        ("o3-mini", False),
        ("fake-gpt", False),
    ],
)
def test_auto_vision_goes_by_the_model_name(model: str, sees: bool) -> None:
    assert sees_images(persona("a"), LLMConfig(model=model), "openai") is sees


def test_vision_settings_and_the_local_model() -> None:
    on, off = LLMConfig(model="llama3.1", vision=True), LLMConfig(model="gpt-4o", vision=False)
    assert sees_images(persona("a"), on, "openai") and not sees_images(persona("a"), off, "openai")
    # The persona's own model decides first: its name under auto, its `vision` always.
    assert sees_images(persona("a", model={"name": "llava"}), LLMConfig(model="llama3.1"), "openai")
    assert not sees_images(persona("a", model={"vision": False}), LLMConfig(model="gpt-4o"), "openai")
    assert not sees_images(persona("a", model={"vision": True}), on, "local")


def test_the_image_trigger_takes_a_chance_and_refuses_false() -> None:
    assert persona("a", triggers=[{"image": True, "chance": 0.25}]).triggers[0].kind == "image"
    with pytest.raises(ValidationError, match="image: false is not a trigger"):
        persona("a", triggers=[{"image": False}])
    with pytest.raises(ValidationError, match="exactly one kind"):
        persona("a", triggers=[{"image": True, "keywords": ["cat"]}])


async def test_a_photo_fires_image_triggers_by_their_chance() -> None:
    ps = [
        persona("always", triggers=[{"image": True}]),
        persona("never", triggers=[{"image": True, "chance": 0.0}]),
        persona("words", triggers=[{"keywords": ["cat"]}]),
    ]
    fleet, _, _ = make_fleet(ps, max_responders=3)
    photo = await fleet.handle(msg("", images=(CAT,)))
    assert [(d.persona_id, d.reason) for d in photo.decisions if d.action == "reply"] == [("always", "image")]
    text = await fleet.handle(msg("a cat"))
    assert [d.persona_id for d in text.decisions if d.action == "reply"] == ["words"]


async def test_a_reply_of_a_seeing_model_carries_the_photo_and_history_only_its_placeholder() -> None:
    fleet, _, client = photo_fleet()
    upload = ImagePart("image/jpeg", 0, "my new cat", data=jpeg(640, 480))
    plan = await fleet.handle(msg("", images=(upload,), channel="pics"))
    fleet.execute(plan)
    await fleet.drain()
    (request,) = client.requests
    text, image = request.messages[-1]["content"]
    assert "[photo: 'my new cat']" in text["text"] and image["image_url"]["url"].startswith("data:image/jpeg;base64,")
    history = await fleet.store.history("test:pics", 10)
    assert history[0].text == "[photo: 'my new cat']"
    # The audit keeps what happened, not the uploaded bytes.
    audited = fleet.audit[plan.event.key].event
    assert audited.images[0].alt == "my new cat" and audited.images[0].data == b""


async def test_a_blind_model_is_told_and_nothing_is_fetched() -> None:
    fleet, adapter, client = photo_fleet(model="llama3.1:8b")
    plan = await fleet.handle(msg("", images=(CAT,)))
    fleet.execute(plan)
    await fleet.drain()
    (request,) = client.requests
    assert "[photo: 'my new cat', you cannot see images]" in request.messages[-1]["content"]
    assert "cannot see images" in request.messages[0]["content"] and adapter.fetched == []


async def test_a_photo_that_cannot_be_fetched_leaves_the_placeholder_and_the_reply_goes_out() -> None:
    fleet, adapter, client = photo_fleet()
    plan = await fleet.handle(msg("", images=(CAT,)))
    fleet.execute(plan)
    await fleet.drain()
    (request,) = client.requests
    assert adapter.fetched == [CAT] and isinstance(request.messages[-1]["content"], str)
    assert "[photo: 'my new cat']" in request.messages[-1]["content"] and adapter.replies


async def test_forget_drops_cached_photos_of_that_person_only() -> None:
    fleet, _, _ = photo_fleet()
    bob = Author(id="u2", name="bob")
    mine = msg("", images=(CAT,))
    theirs = msg("", images=(CAT,), author=bob)
    for m in (mine, theirs):
        await fleet.handle(m)
    gallery = fleet.gallery
    await fleet.handle(Command("test", "c-forget", "general", HUMAN, "forget"))
    assert gallery.get(mine.key, fleet.clock()) == ()
    assert gallery.get(theirs.key, fleet.clock()) == (CAT,)


def test_the_gallery_is_bounded_and_forgets_with_age() -> None:
    gallery = Gallery(max_entries=2, max_age=60)
    first, second, third = (msg("", images=(CAT,)) for _ in range(3))
    gallery.put(first, 0)
    gallery.put(second, 10)
    gallery.keep_prepared(second.key, ("data:image/jpeg;base64,AAAA",))
    gallery.put(third, 20)
    assert gallery.get(first.key, 20) == () and len(gallery) == 2
    assert gallery.get(second.key, 69) == (CAT,) and gallery.get(second.key, 71) == ()
    gallery.put(msg("", images=(CAT,)), 100)  # ages the others out
    assert gallery.prepared(second.key) is None and len(gallery) == 1


def test_a_claim_carries_photo_references_but_never_bytes() -> None:
    m = msg("hi", images=(CAT, ImagePart("image/png", 3, data=b"abc")), files=("a 40 MB video",))
    event, _ = decode_claim(encode_claim(m))
    assert isinstance(event, Message)
    assert event.images == (CAT, ImagePart("image/png", 3)) and event.files == ("a 40 MB video",)


def test_uploaded_bytes_held_by_the_gallery_are_bounded() -> None:
    gallery = Gallery(max_bytes=2500)
    uploads = [msg("", images=(ImagePart("image/jpeg", 1000, data=b"x" * 1000),)) for _ in range(3)]
    for n, m in enumerate(uploads):
        gallery.put(m, n)
    assert gallery.get(uploads[0].key, 3) == () and gallery.get(uploads[2].key, 3) != ()
    assert gallery.bytes == 2000
    gallery.forget_user("test", HUMAN.id)
    assert gallery.bytes == 0 and len(gallery) == 0


def test_llm_vision_takes_auto_true_or_false_and_says_so_otherwise() -> None:
    assert LLMConfig(vision="true").vision is True and LLMConfig(vision="AUTO").vision == "auto"
    with pytest.raises(ValidationError, match="must be auto, true or false"):
        LLMConfig(vision="maybe")
