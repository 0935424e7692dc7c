"""The fake must stay compatible with the real SDK, or every test built on it lies."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import aiohttp
import openai
import pytest
import pytest_asyncio
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam

from tests.fakes.openai_server import Delay, FakeOpenAI, Reply, Status, Truncated, estimate_tokens

MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "hello there"},
]


# pytest_asyncio.fixture keeps these working even if asyncio_mode is ever strict.
@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server


@pytest_asyncio.fixture
async def oai(fake: FakeOpenAI) -> AsyncIterator[openai.AsyncOpenAI]:
    # Closing the client matters: leaked keep-alive sockets surface as ResourceWarnings later.
    async with openai.AsyncOpenAI(base_url=fake.base_url, api_key="test-key", max_retries=0) as client:
        yield client


async def stream_chunks(oai: openai.AsyncOpenAI, include_usage: bool = False) -> list[ChatCompletionChunk]:
    stream = await oai.chat.completions.create(
        model="fake-gpt", messages=MESSAGES, stream=True, stream_options={"include_usage": include_usage}
    )
    return [chunk async for chunk in stream]


@pytest.mark.asyncio
async def test_non_streaming_reply_and_usage(oai: openai.AsyncOpenAI) -> None:
    resp = await oai.chat.completions.create(model="fake-gpt", messages=MESSAGES)

    assert resp.choices[0].message.content == "echo: hello there"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None
    prompt = estimate_tokens("be brief") + estimate_tokens("hello there")
    assert resp.usage.prompt_tokens == prompt
    assert resp.usage.completion_tokens == estimate_tokens("echo: hello there")
    assert resp.usage.total_tokens == prompt + resp.usage.completion_tokens


@pytest.mark.asyncio
async def test_streaming_assembles_reply_with_stop_and_usage(oai: openai.AsyncOpenAI) -> None:
    chunks = await stream_chunks(oai, include_usage=True)

    content = [c for c in chunks if c.choices]
    assert len(content) > 1
    assert "".join(c.choices[0].delta.content or "" for c in content) == "echo: hello there"
    assert [c.choices[0].finish_reason for c in content][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == estimate_tokens("echo: hello there")


@pytest.mark.asyncio
async def test_raw_stream_chunks_validate_strictly(fake: FakeOpenAI) -> None:
    # The SDK builds models without validation, so check the wire shape ourselves.
    body = {"model": "m", "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{fake.base_url}/chat/completions", json=body) as r,
    ):
        assert r.headers["Content-Type"].startswith("text/event-stream")
        raw = await r.text()
    events = [e.removeprefix("data: ") for e in raw.split("\n\n") if e]
    assert events[-1] == "[DONE]"
    for event in events[:-1]:
        ChatCompletionChunk.model_validate(json.loads(event))


@pytest.mark.asyncio
async def test_rate_limit_then_success_with_one_retry(fake: FakeOpenAI, oai: openai.AsyncOpenAI) -> None:
    fake.script(Status.rate_limited(retry_after=0.1))
    resp = await oai.with_options(max_retries=1).chat.completions.create(model="m", messages=MESSAGES)

    assert resp.choices[0].message.content == "echo: hello there"
    assert len(fake.requests) == 2


@pytest.mark.asyncio
async def test_rate_limit_without_retries_raises(fake: FakeOpenAI, oai: openai.AsyncOpenAI) -> None:
    fake.script(Status.insufficient_quota())
    with pytest.raises(openai.RateLimitError) as exc:
        await oai.chat.completions.create(model="m", messages=MESSAGES)
    assert exc.value.code == "insufficient_quota"
    assert exc.value.type == "insufficient_quota"


@pytest.mark.asyncio
async def test_server_error_then_success(fake: FakeOpenAI, oai: openai.AsyncOpenAI) -> None:
    fake.script(Status.server_error(), Reply("recovered"))
    with pytest.raises(openai.InternalServerError):
        await oai.chat.completions.create(model="m", messages=MESSAGES)
    resp = await oai.chat.completions.create(model="m", messages=MESSAGES)
    assert resp.choices[0].message.content == "recovered"


@pytest.mark.asyncio
async def test_delay_trips_client_timeout(fake: FakeOpenAI, oai: openai.AsyncOpenAI) -> None:
    fake.script(Delay(5))
    with pytest.raises(openai.APITimeoutError):
        await oai.chat.completions.create(model="m", messages=MESSAGES, timeout=0.2)


@pytest.mark.asyncio
async def test_truncated_stream_ends_without_finish_reason(fake: FakeOpenAI, oai: openai.AsyncOpenAI) -> None:
    fake.script(Truncated())
    chunks = await stream_chunks(oai)

    assert chunks
    assert "".join(c.choices[0].delta.content or "" for c in chunks)
    assert all(c.choices[0].finish_reason is None for c in chunks)


@pytest.mark.asyncio
async def test_aborted_stream_raises_connection_error(fake: FakeOpenAI, oai: openai.AsyncOpenAI) -> None:
    fake.script(Truncated(abort=True), Truncated())
    with pytest.raises(openai.APIConnectionError):
        await stream_chunks(oai)
    # Non-streaming has no clean way to end early, so it always gets a cut body.
    with pytest.raises(openai.APIConnectionError):
        await oai.chat.completions.create(model="m", messages=MESSAGES)


@pytest.mark.asyncio
async def test_requests_recorded_and_script_runs_out(fake: FakeOpenAI, oai: openai.AsyncOpenAI) -> None:
    fake.script(Reply("one-off"))
    first = await oai.chat.completions.create(model="a", messages=MESSAGES)
    second = await oai.chat.completions.create(model="b", messages=MESSAGES, temperature=0.5)

    assert first.choices[0].message.content == "one-off"
    assert second.choices[0].message.content == "echo: hello there"
    assert [r["model"] for r in fake.requests] == ["a", "b"]
    assert fake.requests[1]["temperature"] == 0.5
    assert fake.requests[0]["messages"] == MESSAGES


@pytest.mark.asyncio
async def test_custom_reply_and_models() -> None:
    async with (
        FakeOpenAI(reply=lambda body: f"{len(body['messages'])} messages") as fake,
        openai.AsyncOpenAI(base_url=fake.base_url, api_key="test-key", max_retries=0) as oai,
    ):
        resp = await oai.chat.completions.create(model="m", messages=MESSAGES)
        models = await oai.models.list()
    assert resp.choices[0].message.content == "2 messages"
    assert [m.id for m in models.data] == ["fake-gpt"]


@pytest.mark.asyncio
async def test_content_filter_is_a_bad_request_with_its_code(fake: FakeOpenAI, oai: openai.AsyncOpenAI) -> None:
    fake.script(Status.content_filter())
    with pytest.raises(openai.BadRequestError) as exc:
        await oai.chat.completions.create(model="fake-gpt", messages=MESSAGES)
    assert exc.value.status_code == 400 and exc.value.code == "content_filter"


@pytest.mark.asyncio
async def test_fallback_answers_every_request_once_the_script_is_used_up(
    fake: FakeOpenAI, oai: openai.AsyncOpenAI
) -> None:
    fake.fallback = Status.server_error(503)
    for _ in range(3):
        with pytest.raises(openai.InternalServerError):
            await oai.chat.completions.create(model="fake-gpt", messages=MESSAGES)
    fake.fallback = None
    resp = await oai.chat.completions.create(model="fake-gpt", messages=MESSAGES)
    assert resp.choices[0].finish_reason == "stop"


@pytest.mark.asyncio
async def test_interrupting_server_ends_the_running_stream_without_finish_reason() -> None:
    async with FakeOpenAI(interrupts=True, chunk_seconds=0.5) as fake:
        async with openai.AsyncOpenAI(base_url=fake.base_url, api_key="k", max_retries=0) as oai:
            first = await oai.chat.completions.create(model="fake-gpt", messages=MESSAGES, stream=True)
            chunks = [await anext(first)]  # the first piece is out: the stream is running
            second = await oai.chat.completions.create(model="fake-gpt", messages=MESSAGES, stream=True)
            chunks += [chunk async for chunk in first]
            rest = [chunk async for chunk in second]
    assert fake.interrupted == 1
    assert all(c.choices[0].finish_reason is None for c in chunks if c.choices)
    assert rest[-1].choices[0].finish_reason == "stop"


PIXEL = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def with_parts(*parts: dict[str, object], role: str = "user") -> list[ChatCompletionMessageParam]:
    return [{"role": role, "content": list(parts)}]  # type: ignore[misc, list-item]


async def test_content_parts_are_checked_like_the_real_api(fake: FakeOpenAI, oai: openai.AsyncOpenAI) -> None:
    good = with_parts(
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": PIXEL, "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    )
    done = await oai.chat.completions.create(model="fake-gpt", messages=good)
    assert done.choices[0].message.content and fake.images == [PIXEL, "https://example.com/cat.jpg"]
    bad = [
        (with_parts({"type": "image", "url": PIXEL}), "type"),
        (with_parts({"type": "image_url", "image_url": {"url": "http://example.com/cat.jpg"}}), "url"),
        (with_parts({"type": "image_url", "image_url": {"url": "data:text/plain;base64,aGk="}}), "url"),
        (with_parts({"type": "image_url", "image_url": {"url": PIXEL, "detail": "medium"}}), "detail"),
        (with_parts({"type": "text"}), "text"),
        (with_parts({"type": "image_url", "image_url": {"url": PIXEL}}, role="assistant"), "content.[0]"),
    ]
    for messages, param in bad:
        with pytest.raises(openai.BadRequestError) as refused:
            await oai.chat.completions.create(model="fake-gpt", messages=messages)
        assert param in str(refused.value.body), refused.value.body
    assert len(fake.images) == 2  # refused requests record no images


async def test_a_text_only_model_refuses_image_parts() -> None:
    async with FakeOpenAI(vision=False) as blind:
        async with openai.AsyncOpenAI(base_url=blind.base_url, api_key="k", max_retries=0) as client:
            with pytest.raises(openai.BadRequestError, match="only supported by certain models"):
                await client.chat.completions.create(
                    model="fake-gpt", messages=with_parts({"type": "image_url", "image_url": {"url": PIXEL}})
                )
            words = await client.chat.completions.create(
                model="fake-gpt", messages=with_parts({"type": "text", "text": "hi"})
            )
            assert words.choices[0].message.content
