"""The OpenAI-compatible client against a fake endpoint, through the real openai SDK."""

import asyncio
from collections.abc import AsyncIterator

import pytest

from bots.config import LLMConfig
from bots.core.brain import Brain, IncompleteReply, Usage
from bots.core.ports import LLMError, LLMRequest
from bots.llm.openai import OpenAIClient
from tests.conftest import persona
from tests.fakes.openai_server import Delay, FakeOpenAI, Reply, Status, Truncated

REQ = LLMRequest(messages=({"role": "user", "content": "hello"},), model="fake-gpt", temperature=0.5, max_tokens=50)


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server


def client(fake: FakeOpenAI, **kw) -> OpenAIClient:
    return OpenAIClient(api_key="test-key", base_url=fake.base_url, timeout=kw.pop("timeout", 5), backoff=0.01, **kw)


async def text_of(c: OpenAIClient) -> str:
    return "".join([chunk.text async for chunk in c.stream(REQ)])


@pytest.mark.parametrize("streaming", [True, False])
async def test_reply_streaming_and_not(fake: FakeOpenAI, streaming: bool) -> None:
    fake.script(Reply("Have you read the contract?"))
    c = client(fake, streaming=streaming)
    assert await text_of(c) == "Have you read the contract?"
    assert fake.requests[0].get("stream", False) is streaming
    await c.close()


async def test_429_then_success_honours_retry_after(fake: FakeOpenAI) -> None:
    fake.script(Status.rate_limited(0.05), Reply("ok now"))
    c = client(fake)
    assert await text_of(c) == "ok now"
    assert len(fake.requests) == 2
    await c.close()


async def test_500_then_success(fake: FakeOpenAI) -> None:
    fake.script(Status.server_error(500), Reply("recovered"))
    c = client(fake)
    assert await text_of(c) == "recovered"
    await c.close()


async def test_insufficient_quota_is_not_retried(fake: FakeOpenAI) -> None:
    fake.script(Status.insufficient_quota(), Reply("never"))
    c = client(fake)
    with pytest.raises(LLMError) as err:
        await text_of(c)
    assert err.value.kind == "insufficient_quota"  # not "rate_limited": waiting never fixes it
    assert len(fake.requests) == 1
    await c.close()


async def test_retries_run_out_then_the_reply_is_dropped(fake: FakeOpenAI) -> None:
    fake.script(*[Status.server_error(503)] * 5)
    c = client(fake, max_retries=2)
    with pytest.raises(LLMError) as err:
        await text_of(c)
    assert err.value.kind == "http_503" and len(fake.requests) == 3
    await c.close()


async def test_a_hung_endpoint_times_out(fake: FakeOpenAI) -> None:
    fake.script(Delay(3))
    c = client(fake, timeout=0.3)
    with pytest.raises(LLMError) as err:
        await text_of(c)
    assert err.value.kind == "timeout"
    await c.close()


async def test_a_stream_without_finish_reason_is_incomplete(fake: FakeOpenAI) -> None:
    fake.script(Truncated())
    c = client(fake)
    brain = Brain(c, LLMConfig())
    p = persona("a")
    with pytest.raises(IncompleteReply):
        async for _ in brain.write(p, REQ):
            pass
    await c.close()


async def test_usage_is_reported(fake: FakeOpenAI) -> None:
    seen: list[Usage] = []
    c = client(fake)
    brain = Brain(c, LLMConfig(), on_usage=seen.append)
    out = [t async for t in brain.write(persona("a"), REQ)]
    assert out and seen and seen[0].completion_tokens > 0 and not seen[0].estimated
    await c.close()


async def test_time_the_consumer_spends_on_a_chunk_does_not_count_against_the_timeout(fake: FakeOpenAI) -> None:
    fake.script(Reply("one two three four five six"))
    c = client(fake, timeout=0.5)
    parts = []
    async for chunk in c.stream(REQ):
        parts.append(chunk.text)
        await asyncio.sleep(0.3)  # an adapter editing a message, say
    assert "".join(parts) == "one two three four five six"
    await c.close()
