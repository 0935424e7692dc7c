"""Operating the fleet, in process: disclosure, budgets, and the circuit breaker. Metrics and the audit
are in test_ops_audit.py; logs, config, retention and shutdown in test_ops_lifecycle.py."""

from __future__ import annotations

import logging

import pytest

from bots.config import Price
from bots.core.events import Author, Reply
from bots.core.ports import LLMError, LLMRequest
from bots.llm.breaker import Breaker, RetryBudget
from bots.llm.canned import CannedClient
from bots.llm.openai import OpenAIClient
from bots.state.memory import MemoryStore
from tests.conftest import Clock, make_fleet, msg, persona
from tests.fakes.openai_server import FakeOpenAI, Status
from tests.ops_world import BOB, DISCLOSURE, Metered, say, with_llm, with_rules
from tests.test_fleet import Failing, cmd, replies, skips

# --- disclosure -----------------------------------------------------------------------------------


async def test_disclosure_on_first_reply_to_each_person_only() -> None:
    ps = [persona("a", triggers=[{"keywords": ["x"]}]), persona("b", triggers=[{"keywords": ["y"]}])]
    fleet, adapter, clock = make_fleet(ps)
    await say(fleet, "x")
    clock.advance(5)
    await say(fleet, "x again")
    await say(fleet, "x", author=BOB)
    await say(fleet, "y")
    texts = [(r.persona_id, r.to_user, t) for r, t in adapter.replies]
    assert texts[0] == ("a", "u1", f"ok\n\n{DISCLOSURE}")
    assert texts[1] == ("a", "u1", "ok")  # the second reply to the same person: no disclosure
    assert texts[2] == ("a", "u2", f"ok\n\n{DISCLOSURE}")  # another person
    assert texts[3] == ("b", "u1", f"ok\n\n{DISCLOSURE}")  # another persona
    store = fleet.store
    assert isinstance(store, MemoryStore)
    assert await store.first_told("test", "a", "u1") == clock.now - 5
    # The footer is the fleet's, not the persona's: it stays out of the history the model sees.
    assert all(DISCLOSURE not in t.text for t in await store.history("test:general", 50))

    await fleet.handle(cmd("forget"))
    assert await store.first_told("test", "a", "u1") is None
    await say(fleet, "x once more")
    assert adapter.replies[-1][1] == f"ok\n\n{DISCLOSURE}"


async def test_a_dropped_first_reply_leaves_the_disclosure_for_the_next_one() -> None:
    fleet, adapter, clock = make_fleet([persona("a", triggers=[{"keywords": ["x"]}])], llm=Failing())
    await say(fleet, "x")
    assert adapter.replies == []
    fleet.brain.client = CannedClient("ok")
    clock.advance(60)
    await say(fleet, "x")
    assert adapter.replies[0][1] == f"ok\n\n{DISCLOSURE}"
    clock.advance(60)
    await say(fleet, "x")
    assert adapter.replies[1][1] == "ok"


async def test_persona_to_persona_replies_and_empty_text_carry_no_disclosure() -> None:
    fleet, adapter, _ = make_fleet([persona("a", triggers=[{"keywords": ["x"]}])])
    fleet.config = fleet.config.model_copy(update={"about": fleet.config.about.model_copy(update={"disclosure": ""})})
    await say(fleet, "x")
    assert adapter.replies[0][1] == "ok"
    other = Author(id="persona:b", name="B", is_bot=True, persona_id="b")
    plan = await fleet.handle(msg("x", author=other))
    assert [a.footer for a in plan.actions if isinstance(a, Reply)] == [""]


async def test_sponsor_line_on_every_reply_disclosure_on_the_first() -> None:
    fleet, adapter, clock = make_fleet([persona("brand", sponsor="Acme Gear", triggers=[{"keywords": ["tent"]}])])
    await say(fleet, "which tent?")
    clock.advance(5)
    await say(fleet, "and which tent for winter?")
    first, second = (t for _, t in adapter.replies)
    assert first == f"ok\n\n{DISCLOSURE}\n— AI persona for Acme Gear"
    assert second == "ok\n\n— AI persona for Acme Gear"
    listing = (await fleet.handle(cmd("personas"))).actions[0].text
    assert "sponsored by Acme Gear" in listing


async def test_about_explains_operator_storage_retention_and_opt_out() -> None:
    fleet, _, _ = make_fleet([persona("a", sponsor="Acme")])
    fleet.config = fleet.config.model_copy(
        update={
            "retention_days": 14,
            "about": fleet.config.about.model_copy(update={"operator": "Example Org", "contact": "ops@example.org"}),
        }
    )
    text = (await fleet.handle(cmd("about"))).actions[0].text
    for part in ("AI personas", "Example Org", "ops@example.org", "14 days", "/optout", "/forget", "sponsored"):
        assert part in text, part


# --- budgets --------------------------------------------------------------------------------------


async def test_persona_budget_silences_it_at_the_limit_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    ps = [persona("a", triggers=[{"keywords": ["x"]}, {"command": True}], limits={"daily_tokens": 250})]
    fleet, adapter, clock = make_fleet(ps, llm=Metered())  # 100 tokens per reply
    for _ in range(3):
        assert replies(await say(fleet, "x")) == ["a"]
        clock.advance(1)
    assert fleet.usage.totals["p:a"] == 300
    with caplog.at_level(logging.WARNING, logger="botfleet.usage"):
        for _ in range(3):
            plan = await say(fleet, "x")
            assert replies(plan) == [] and skips(plan) == {"a": "budget:persona"}
    assert len(adapter.replies) == 3
    assert len([r for r in caplog.records if "limits.daily_tokens" in r.getMessage()]) == 1
    # /ask does not get around it either.
    asked = await fleet.handle(cmd("ask", "a please?"))
    assert replies(asked) == [] and "resting" in asked.actions[0].text
    clock.advance(86_400)  # a new UTC day
    assert replies(await say(fleet, "x")) == ["a"]


async def test_user_and_fleet_budgets() -> None:
    ps = [persona(p, triggers=[{"keywords": ["x"]}]) for p in ("a", "b")]
    fleet, _, clock = make_fleet(ps, llm=Metered(), max_responders=2)
    with_rules(fleet, user_daily_tokens=200)
    assert sorted(replies(await say(fleet, "x"))) == ["a", "b"]  # alice: 200 tokens
    clock.advance(1)
    plan = await say(fleet, "x")
    assert skips(plan) == {"a": "budget:user", "b": "budget:user"}
    assert sorted(replies(await say(fleet, "x", author=BOB))) == ["a", "b"]  # bob has his own
    clock.advance(1)
    with_llm(fleet, daily_token_budget=400)
    plan = await say(fleet, "x", author=Author(id="u3", name="carol"))
    assert skips(plan) == {"a": "budget:fleet", "b": "budget:fleet"}
    report = fleet.usage.report(fleet.config)
    assert report["fleet_tokens"] == 400 and report["persona_tokens"] == {"a": 200, "b": 200}


async def test_budget_counts_are_shared_through_the_store() -> None:
    store = MemoryStore()
    one, _, _ = make_fleet([persona("a", triggers=[{"keywords": ["x"]}], limits={"daily_tokens": 150})], llm=Metered())
    two, _, _ = make_fleet([persona("a", triggers=[{"keywords": ["x"]}], limits={"daily_tokens": 150})], llm=Metered())
    one.store = two.store = store
    assert replies(await say(one, "x")) == ["a"]
    await one.usage.sync(store)
    await two.usage.sync(store)
    assert two.usage.totals["p:a"] == 100
    assert replies(await say(two, "x")) == ["a"]
    await two.usage.sync(store)
    await one.usage.sync(store)
    assert skips(await say(one, "x")) == {"a": "budget:persona"}


async def test_priced_tokens_become_money() -> None:
    fleet, _, _ = make_fleet([persona("a", triggers=[{"keywords": ["x"]}])], llm=Metered(1000, 500))
    with_llm(fleet, price_per_1k=Price(prompt=0.5, completion=2.0))
    await say(fleet, "x")
    assert fleet.usage.report(fleet.config)["this_process"]["a"]["cost"] == pytest.approx(1.5)


# --- the circuit breaker and the retry budget -----------------------------------------------------


def test_breaker_opens_after_failures_and_half_opens_for_one_trial(clock: Clock) -> None:
    b = Breaker(3, 30, clock=clock)
    for _ in range(2):
        permit = b.allow()
        assert permit is not None
        b.record(permit, "timeout")
    assert b.state == "closed"
    b.record(b.allow(), "http_500")  # type: ignore[arg-type]
    assert b.state == "open" and b.resting() and b.allow() is None
    clock.advance(29)
    assert b.allow() is None
    clock.advance(1)
    trial = b.allow()
    assert trial is not None and trial.trial and b.allow() is None  # exactly one trial call
    b.record(trial, "timeout")
    assert b.state == "open" and b.opened == 2  # a failed trial rests again
    clock.advance(30)
    trial = b.allow()
    assert trial is not None
    b.record(trial, None)
    assert b.state == "closed" and not b.resting()
    # Neutral outcomes (the consumer went away, the model wrote nothing) count for nothing.
    for _ in range(5):
        b.record(b.allow(), "cancelled")  # type: ignore[arg-type]
    assert b.state == "closed"


async def test_breaker_quiets_personas_at_plan_time_then_recovers() -> None:
    llm = Metered()
    fleet, adapter, clock = make_fleet([persona("a", triggers=[{"keywords": ["x"]}])], llm=llm)
    fleet.brain.breaker = Breaker(3, 30, clock=clock)
    llm.down = True
    for _ in range(3):
        assert replies(await say(fleet, "x")) == ["a"]  # planned, then dropped by the failing call
        clock.advance(1)
    calls = llm.calls
    for _ in range(5):
        plan = await say(fleet, "x")
        assert skips(plan) == {"a": "llm:circuit_open"}
    assert llm.calls == calls  # resting: nothing queued, nothing sent
    clock.advance(30)
    llm.down = False
    assert replies(await say(fleet, "x")) == ["a"]
    assert fleet.brain.breaker.state == "closed" and adapter.replies[-1][1].startswith("fine")


async def test_retries_stay_a_small_share_of_calls() -> None:
    budget = RetryBudget(ratio=0.5, reserve=1.0)
    async with FakeOpenAI() as fake:
        client = OpenAIClient(
            api_key="k", base_url=fake.base_url, timeout=5, max_retries=3, backoff=0.001, retry_budget=budget
        )
        fake.script(*[Status.server_error(503)] * 10)
        req = LLMRequest(messages=({"role": "user", "content": "hi"},), model="fake-gpt", temperature=0, max_tokens=5)
        for _ in range(3):
            with pytest.raises(LLMError):
                async for _ in client.stream(req):
                    pass
        await client.close()
    # No credit to start with: the second call has earned one retry, the others none. 4 requests for
    # 3 calls, not 12.
    assert len(fake.requests) == 4 and budget.retries == 1 and budget.denied == 3
    b = RetryBudget(ratio=0.1, reserve=2.0)
    granted = 0
    for _ in range(1000):
        b.on_call()
        granted += b.try_retry()
    assert granted <= 0.1 * 1000
