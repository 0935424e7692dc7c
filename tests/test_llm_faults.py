"""The LLM path under faults, end to end through the real openai SDK against the fake endpoint: what
one user can do to the breaker, deadlines with a hung or slow endpoint, the retry budget, and
streams cut short by an endpoint that interrupts running requests (llama.cpp's server)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bots.config import LLMConfig
from bots.core.brain import Brain
from bots.core.events import Action, Author
from bots.core.fleet import Fleet
from bots.core.ports import LLMError, LLMRequest, Turn
from bots.core.text import valid_unicode, with_valid_text
from bots.llm.breaker import Breaker, RetryBudget, endpoint_fault
from bots.llm.canned import CannedClient
from bots.llm.openai import OpenAIClient
from bots.llm.watch import CutStreams, endpoint_host
from tests.conftest import RecordingAdapter, make_fleet, msg, persona
from tests.fakes.openai_server import Delay, FakeOpenAI, Status

REQ = LLMRequest(messages=({"role": "user", "content": "hi"},), model="fake-gpt", temperature=0, max_tokens=20)
EVERYONE = [{"keywords": ["x"]}]


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server


def openai_client(fake: FakeOpenAI, **kw: Any) -> OpenAIClient:
    kw.setdefault("timeout", 5)
    kw.setdefault("backoff", 0.01)
    return OpenAIClient(api_key="sk-secretsecretsecret", base_url=fake.base_url, **kw)


def fleet_on(fake: FakeOpenAI, personas: int = 1, **llm: Any) -> tuple[Fleet, RecordingAdapter, list[str]]:
    """A fleet whose replies come from the fake endpoint through the real SDK, as `botfleet run`
    builds it; returns the outcomes of its actions too."""
    cfg = LLMConfig(**llm)
    client = openai_client(
        fake, timeout=cfg.timeout_seconds, max_retries=cfg.max_retries, retry_budget=RetryBudget(cfg.retry_ratio)
    )
    ps = [persona(f"p{i}", triggers=EVERYONE) for i in range(personas)]
    fleet, adapter, _ = make_fleet(ps, llm=client, config={"llm": llm}, max_responders=personas, max_bot_chain=0)
    outcomes: list[str] = []

    def record(outcome: str, action: Action) -> None:
        outcomes.append(outcome)

    fleet.outcomes.append(record)
    return fleet, adapter, outcomes


async def say(fleet: Fleet, text: str, **kw: Any) -> None:
    await fleet.dispatch(msg(text, **kw))
    await asyncio.wait_for(fleet.drain(), 20)


# --- 11.2: one user must not silence the fleet ----------------------------------------------------


def test_valid_unicode_replaces_what_cannot_be_encoded_and_keeps_the_rest() -> None:
    undecodable = b"caf\xff!".decode("utf-8", "surrogateescape")
    assert valid_unicode(undecodable) == "caf\ufffd!"
    assert valid_unicode("\ud83d") == "\ufffd"  # half a pair, as a broken JSON escape leaves it
    assert valid_unicode("a\ud83d\ude00b") == "a😀b"  # a pair in two code units joins up
    assert valid_unicode("déjà vu 🙂") == "déjà vu 🙂"
    valid_unicode(undecodable).encode("utf-8")


def test_only_endpoint_faults_count_against_the_breaker() -> None:
    for kind in ("http_500", "http_503", "http_504", "timeout", "connection", "rate_limited"):
        assert endpoint_fault(kind), kind
    for kind in ("http_400", "http_400:content_filter", "http_404", "insufficient_quota", "local", "busy"):
        assert not endpoint_fault(kind), kind
    for kind in ("UnicodeEncodeError", "incomplete", "empty", "cancelled", "circuit_open"):
        assert not endpoint_fault(kind), kind


async def test_a_content_filter_400_drops_that_reply_and_leaves_the_breaker_closed(fake: FakeOpenAI) -> None:
    fleet, adapter, outcomes = fleet_on(fake, breaker_failures=2)
    fake.fallback = Status.content_filter()
    for n in range(4):
        await say(fleet, "x something the filter dislikes", channel=f"c{n}")
    assert outcomes == ["dropped:http_400:content_filter"] * 4
    assert fleet.brain.breaker.state == "closed"
    fake.fallback = None
    await say(fleet, "x hello", channel="c9")
    assert outcomes[-1] == "sent" and "alice: x hello" in adapter.replies[-1][1]
    await fleet.stop(0)


async def test_a_500_storm_still_opens_the_breaker(fake: FakeOpenAI) -> None:
    fleet, _, outcomes = fleet_on(fake, breaker_failures=2, max_retries=0)
    fake.fallback = Status.server_error(500)
    for n in range(3):
        await say(fleet, "x", channel=f"c{n}")
    assert outcomes == ["dropped:http_500", "dropped:http_500"]  # the third was never planned
    assert fleet.brain.breaker.state == "open" and len(fake.requests) == 2
    await fleet.stop(0)


async def test_an_undecodable_byte_does_not_poison_the_channel(fake: FakeOpenAI) -> None:
    fleet, adapter, outcomes = fleet_on(fake, breaker_failures=2)
    # What the console reads from a pipe in UTF-8 mode (surrogateescape) when a user sends byte 0xFF.
    await say(fleet, b"x caf\xff".decode("utf-8", "surrogateescape"))
    for n in range(3):
        await say(fleet, f"x again {n}")
    assert outcomes == ["sent"] * 4
    assert "alice: x caf\ufffd\n" in adapter.replies[0][1]
    history = await fleet.store.history("test:general", 20)
    assert all(turn.text == valid_unicode(turn.text) for turn in history)
    await fleet.stop(0)


async def test_history_stored_with_bad_text_cannot_fail_later_requests(fake: FakeOpenAI) -> None:
    fleet, _, outcomes = fleet_on(fake, breaker_failures=2)
    # A turn stored before text was cleaned at the door (an older version, another process).
    await fleet.store.append("test:general", Turn(speaker="bob\udcff", text="bad \udcff byte", at=1.0, user_id="u2"))
    for n in range(3):
        await say(fleet, f"x {n}")
    assert outcomes == ["sent"] * 3
    sent = fake.requests[0]["messages"]
    assert any("bob\ufffd: bad \ufffd byte" in m["content"] for m in sent)
    await fleet.stop(0)


# --- 11.6: every reply is resolved within llm.timeout_seconds -------------------------------------


async def test_a_hung_endpoint_drops_queued_replies_as_busy_within_the_timeout(fake: FakeOpenAI) -> None:
    fleet, _, outcomes = fleet_on(fake, personas=3, timeout_seconds=1, max_concurrency=1, max_retries=0)
    fake.fallback = Delay(30)
    for n in range(3):
        await fleet.dispatch(msg("x", channel=f"c{n}"))
    # Before: each reply's timeout started only once the one slot was free, so 9 replies took 9 s.
    await asyncio.wait_for(fleet.drain(), 6)
    # The first reply timed out on the endpoint; the rest never got the slot (one may get it just as
    # the first gives up, and time out itself).
    assert len(outcomes) == 9 and set(outcomes) == {"dropped:busy", "dropped:timeout"}
    assert outcomes.count("dropped:busy") >= 7 and len(fake.requests) <= 2
    await fleet.stop(0)


async def test_retries_of_a_slow_504_stop_at_the_timeout(fake: FakeOpenAI) -> None:
    fake.fallback = Status.server_error(504, delay=0.4)
    client = openai_client(fake, timeout=1.0, max_retries=10)
    with pytest.raises(LLMError) as err:
        await asyncio.wait_for(_drain(client), 3)
    # Before: each attempt had the whole timeout again, so 11 attempts took 4.4 s.
    assert err.value.kind in ("http_504", "timeout") and len(fake.requests) <= 3
    await client.close()


async def test_a_reply_that_waits_for_a_slot_has_only_the_rest_of_its_time(fake: FakeOpenAI) -> None:
    fake.script(Delay(0.7), Delay(0.7))
    brain = Brain(openai_client(fake, timeout=1.0, max_retries=0), LLMConfig(timeout_seconds=1.0, max_concurrency=1))
    p = persona("a")

    async def write() -> str:
        try:
            return "".join([t async for t in brain.write(p, REQ)])
        except LLMError as exc:
            return exc.kind

    first, second = await asyncio.wait_for(asyncio.gather(write(), write()), 5)
    # The second waited 0.7 s for the slot: 0.3 s is not enough for a 0.7 s answer.
    assert first.startswith("echo") and second == "timeout"
    await brain.close()


async def _drain(client: OpenAIClient) -> str:
    return "".join([c.text async for c in client.stream(REQ)])


# --- 11.7: retries stay within retry_ratio of calls from the first call on ------------------------


async def test_a_burst_against_a_failing_endpoint_is_not_retried_wholesale(fake: FakeOpenAI) -> None:
    fake.fallback = Status.server_error(500)
    budget = RetryBudget(0.1)  # as `botfleet run` builds it from llm.retry_ratio
    client = openai_client(fake, max_retries=2, retry_budget=budget)
    results = await asyncio.gather(*[_drain(client) for _ in range(9)], return_exceptions=True)
    assert all(isinstance(r, LLMError) for r in results)
    # Before: the budget started with 10 credits, so 9 calls made 19 requests.
    assert len(fake.requests) == 9
    for _ in range(21):
        with pytest.raises(LLMError):
            await _drain(client)
    assert len(fake.requests) - 30 <= 0.1 * 30
    await client.close()


# --- 12.7: streams an endpoint interrupts ---------------------------------------------------------


async def test_interrupted_streams_are_logged_and_the_fix_is_advised_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with FakeOpenAI(interrupts=True, chunk_seconds=0.05) as fake:
        fleet, _, outcomes = fleet_on(fake, personas=3)
        for n in range(3):
            await say(fleet, "x", channel=f"c{n}")
        await fleet.stop(0)
    assert fake.interrupted >= 3 and outcomes.count("cut_off") == fake.interrupted
    host = f"127.0.0.1:{fake.port}"
    cut = warnings(caplog, "ended without a finish reason")
    assert cut[0].startswith("reply by p") and host in cut[0]
    advice = warnings(caplog, "--interrupt_requests False")
    assert len(advice) == 1 and "llm.max_concurrency: 1" in advice[0]
    assert "sk-secret" not in caplog.text


def warnings(caplog: pytest.LogCaptureFixture, containing: str) -> list[str]:
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    return [line for line in lines if containing in line]


async def test_with_one_slot_the_interrupting_endpoint_answers_everyone() -> None:
    async with FakeOpenAI(interrupts=True, chunk_seconds=0.05) as fake:
        fleet, _, outcomes = fleet_on(fake, personas=3, max_concurrency=1)
        await say(fleet, "x")
        await fleet.stop(0)
    assert outcomes == ["sent"] * 3 and fake.interrupted == 0


def test_cut_streams_without_overlap_are_not_taken_for_interruptions(caplog: pytest.LogCaptureFixture) -> None:
    watch = CutStreams("llm.example:8080", threshold=2)
    for _ in range(5):
        watch.ended_early(watch.started(), "a")  # one at a time: a flaky proxy, say
    assert not watch.advised
    first, second = watch.started(), watch.started()
    watch.ended_early(first, "a")
    third = watch.started()
    watch.ended_early(second, "b")
    watch.ended_early(third, "c")  # nothing started after it
    assert watch.advised


def test_endpoint_host_never_shows_credentials_or_paths() -> None:
    assert endpoint_host(None) == "api.openai.com"
    assert endpoint_host("http://localhost:8080/v1") == "localhost:8080"
    assert endpoint_host("https://user:sk-abc@proxy.example/v1?key=sk-abc") == "proxy.example"


def test_brain_reports_the_endpoint_of_its_client() -> None:
    brain = Brain(
        OpenAIClient(api_key="k", base_url="http://10.0.0.5:8080/v1", timeout=1), LLMConfig(), breaker=Breaker()
    )
    assert brain.cut_streams.endpoint == "10.0.0.5:8080"


def test_author_names_are_cleaned_at_the_door_too() -> None:
    event = msg("x \udcff", author=Author(id="u9", name="z\udcff"))
    clean = with_valid_text(event)
    assert clean.text == "x \ufffd" and clean.author.name == "z\ufffd"
    assert with_valid_text(clean) is clean


def test_the_local_model_gets_its_own_longer_deadline() -> None:
    """A /panel on the local model queues its answers one after another on the CPU: the 30 s meant for
    an endpoint would drop the later ones, so the local client has its own deadline."""
    config = LLMConfig(timeout_seconds=30, local_timeout_seconds=180)
    assert Brain(CannedClient(), config).timeout_seconds == 30

    class Local(CannedClient):
        name = "local"

    assert Brain(Local(), config).timeout_seconds == 180
