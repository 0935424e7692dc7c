"""Operating the fleet, in process: disclosure, budgets, the circuit breaker, metrics over HTTP, the
/why audit, secret masking, retention, and cutting replies cleanly at shutdown."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio

from bots.app import build_fleet
from bots.cli import main
from bots.config import FleetConfig, Price, load_config
from bots.core.events import Author, Reply
from bots.core.fleet import Fleet
from bots.core.ports import Chunk, LLMError, LLMRequest, Turn
from bots.llm.breaker import Breaker, RetryBudget
from bots.llm.canned import CannedClient
from bots.llm.openai import OpenAIClient
from bots.loading import load_all
from bots.ops.admin import AdminServer, explain
from bots.ops.control import Ops
from bots.ops.logs import JsonFormatter, RedactingFormatter, secrets_of
from bots.ops.metrics import Metrics, reason_label
from bots.ops.reload import apply
from bots.state.memory import MemoryStore
from bots.state.redis import open_redis_state
from bots.yamlfile import ConfigError
from tests.conftest import HUMAN, Clock, make_fleet, msg, persona
from tests.fakes.openai_server import FakeOpenAI, Status
from tests.test_fleet import Failing, cmd, replies, skips

BOB = Author(id="u2", name="bob")
DISCLOSURE = "— AI persona · /about"


class Metered:
    """Replies "fine" and reports a fixed usage, like the API does."""

    name = "metered"

    def __init__(self, prompt: int = 60, completion: int = 40) -> None:
        self.prompt = prompt
        self.completion = completion
        self.calls = 0
        self.down = False

    async def stream(self, request: LLMRequest) -> AsyncIterator[Chunk]:
        self.calls += 1
        if self.down:
            raise LLMError("http_503")
        yield Chunk(text="fine", finish_reason="stop")
        yield Chunk(prompt_tokens=self.prompt, completion_tokens=self.completion)

    async def close(self) -> None:
        return None


def with_llm(fleet: Any, **llm: Any) -> None:
    cfg: FleetConfig = fleet.config
    fleet.config = cfg.model_copy(update={"llm": cfg.llm.model_copy(update=llm)})


def with_rules(fleet: Any, **rules: Any) -> None:
    cfg: FleetConfig = fleet.config
    fleet.config = cfg.model_copy(update={"fleet": cfg.fleet.model_copy(update=rules)})


async def say(fleet: Any, text: str, **kw: Any) -> Any:
    m = msg(text, **kw)
    await fleet.dispatch(m)
    await fleet.drain()
    return fleet.audit[m.key]


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


# --- metrics and the audit over HTTP --------------------------------------------------------------


async def http_get(port: int, path: str) -> tuple[int, str, str]:
    def get() -> tuple[int, str, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
                return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()

    return await asyncio.to_thread(get)


def sample(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    prefix = f"{name}{{{want}}} " if labels else f"{name} "
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.split()[-1])
    raise AssertionError(f"{prefix!r} not in /metrics")


async def test_metrics_and_why_are_served_over_http() -> None:
    ps = [
        persona("a", triggers=[{"keywords": ["x"]}], limits={"per_minute": 1}),
        persona("b", triggers=[{"keywords": ["x"]}], reactions=[{"keywords": ["x"], "emoji": "👍"}]),
    ]
    fleet, _, clock = make_fleet(ps, llm=Metered(), max_responders=2)
    server = AdminServer(fleet, Metrics(fleet), "127.0.0.1", 0)
    port = await server.start()
    # A second fleet in the same process has its own registry: no "duplicated timeseries" error.
    other, _, _ = make_fleet([persona("a")])
    Metrics(other)
    try:
        first = await say(fleet, "x")
        clock.advance(1)
        await say(fleet, "x", author=BOB)
        status, ctype, text = await http_get(port, "/metrics")
        assert status == 200 and ctype.startswith("text/plain")
        assert sample(text, "botfleet_messages_total", platform="test", kind="message") == 2
        assert sample(text, "botfleet_messages_total", platform="test", kind="persona") == 3
        assert sample(text, "botfleet_decisions_total", persona="a", action="reply", reason="keywords") == 1
        assert sample(text, "botfleet_decisions_total", persona="a", action="skip", reason="per_minute") == 1
        assert sample(text, "botfleet_limit_hits_total", limit="per_minute") == 1
        assert sample(text, "botfleet_replies_sent_total", persona="b", platform="test") == 2
        assert sample(text, "botfleet_reactions_sent_total", persona="b", platform="test") == 2
        assert sample(text, "botfleet_llm_tokens_total", persona="b", kind="completion") == 80
        assert sample(text, "botfleet_llm_latency_seconds_count", outcome="ok") == 3
        assert sample(text, "botfleet_replies_in_flight") == 0
        assert sample(text, "botfleet_llm_circuit_open") == 0

        status, ctype, body = await http_get(port, f"/why/test/{first.event.id}")
        assert status == 200 and ctype == "application/json"
        why = json.loads(body)
        assert why["event"] == first.event.key and why["trigger"] == "message"
        assert {(d["persona"], d["action"]) for d in why["decisions"]} >= {
            ("a", "reply"),
            ("b", "reply"),
            ("b", "react"),
        }
        assert "x" not in json.dumps(why["decisions"]).replace("keywords:x", "")  # reasons only, no message text
        assert (await http_get(port, "/why/test/nope"))[0] == 404
        usage = json.loads((await http_get(port, "/usage"))[2])
        assert usage["fleet_tokens"] == 300
        # Who spent the tokens stays out of it unless the operator asks (metrics.usage_user_ids).
        assert usage["users"] == 2 and sorted(usage["top_user_tokens"]) == [100, 200]
        assert "top_users" not in usage and HUMAN.id not in json.dumps(usage) and BOB.id not in json.dumps(usage)
        fleet.config = fleet.config.model_copy(
            update={"metrics": fleet.config.metrics.model_copy(update={"usage_user_ids": True})}
        )
        usage = json.loads((await http_get(port, "/usage"))[2])
        assert usage["top_users"] == {f"test:{HUMAN.id}": 200, f"test:{BOB.id}": 100}
    finally:
        await server.close()


def test_reason_labels_stay_a_small_set() -> None:
    cases = {
        "keywords:plan": "keywords",
        "mention:platform": "mention",
        "per_minute (retry in 40s)": "per_minute",
        "chain_depth:3>2": "chain_depth",
        "command:panel#2": "command:panel",
        "react:keywords:scam": "react:keywords",
        "budget:persona": "budget:persona",
    }
    assert {k: reason_label(k) for k in cases} == cases


async def test_explain_names_no_text_for_notes() -> None:
    fleet, _, _ = make_fleet([persona("a", triggers=[{"chance": 1.0}])])
    await fleet.handle(cmd("optout"))
    plan = await fleet.handle(msg("secret words"))
    assert explain(plan)["note"] == "opted_out" and "secret" not in json.dumps(explain(plan))


# --- logs -----------------------------------------------------------------------------------------


def test_no_log_line_contains_a_configured_secret(tmp_path: Path) -> None:
    cfg_file = tmp_path / "config.yaml"
    cfg_file.write_text(
        "adapters:\n  discord:\n    token: ${DT}\n  telegram: {token: '12345:tg-secret-token'}\n"
        "llm: {api_key: sk-config-key-0001}\nstore: 'redis://:redis-pass-77@localhost:6379/0'\n"
    )
    env = {"DT": "discord-tok-abcdef", "OPENAI_API_KEY": "sk-env-key-999999", "HOME": "/home/someone"}
    cfg = load_config(cfg_file, env=env)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(RedactingFormatter(JsonFormatter(), secrets_of(cfg, env)))
    logger = logging.getLogger("botfleet.test_secrets")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        logger.warning("GET https://api.telegram.org/bot12345:tg-secret-token/getMe failed")
        logger.info("auth %s and %s", "sk-config-key-0001", "sk-env-key-999999", extra={"fields": {"persona": "a"}})
        try:
            raise RuntimeError("connect redis://:redis-pass-77@localhost discord-tok-abcdef")
        except RuntimeError:
            logger.exception("boom")
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    for secret in ("tg-secret-token", "sk-config-key-0001", "sk-env-key-999999", "redis-pass-77", "discord-tok-abcdef"):
        assert secret not in out
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert len(lines) == 3 and lines[1]["persona"] == "a" and "***" in lines[1]["msg"]


# --- config ---------------------------------------------------------------------------------------


def test_store_accepts_a_url_or_a_mapping_with_retention(tmp_path: Path) -> None:
    f = tmp_path / "config.yaml"
    f.write_text("store: redis://h:1/0\n")
    cfg = load_config(f, env={})
    assert cfg.store == "redis://h:1/0" and cfg.retention_days == 30
    f.write_text("store:\n  url: redis://h:2/0\n  retention_days: 7\nllm: {price_per_1k: 0.25}\n")
    cfg = load_config(f, env={})
    assert cfg.store == "redis://h:2/0" and cfg.retention_days == 7
    assert cfg.llm.price_per_1k is not None and cfg.llm.price_per_1k.completion == 0.25
    assert cfg.pid_file == tmp_path / "botfleet.pid"
    f.write_text("store:\n  url: redis://h:2/0\n  retention_days: -1\n")
    with pytest.raises(ConfigError) as err:
        load_config(f, env={})
    assert f"{f}:3: retention_days:" in str(err.value)
    f.write_text("store:\n  uri: redis://h:2/0\n")
    with pytest.raises(ConfigError) as err:
        load_config(f, env={})
    assert f"{f}:1: store: store: unknown key(s) uri" in str(err.value)
    assert FleetConfig.model_validate({"store": {"retention_days": 3}}).retention_days == 3


# --- retention ------------------------------------------------------------------------------------


async def test_history_older_than_retention_is_deleted() -> None:
    store = MemoryStore(retention_seconds=100)
    await store.append("t:c", Turn("a", "old", at=1000))
    await store.append("t:idle", Turn("a", "old too", at=1000))
    await store.append("t:c", Turn("a", "new", at=1150))
    assert [t.text for t in await store.history("t:c", 10)] == ["new"]
    assert await store.prune(1200) == 1  # the idle conversation goes too
    assert await store.history("t:idle", 10) == []


# --- shutdown -------------------------------------------------------------------------------------


class Slow:
    """Streams a few words, then stalls (a slow model) unless told to finish."""

    name = "slow"

    def __init__(self) -> None:
        self.started = asyncio.Event()

    async def stream(self, request: LLMRequest) -> AsyncIterator[Chunk]:
        yield Chunk(text="half a ")
        self.started.set()
        await asyncio.sleep(30)
        yield Chunk(text="thought", finish_reason="stop")

    async def close(self) -> None:
        return None


async def test_stop_cuts_streaming_replies_cleanly_and_in_time() -> None:
    llm = Slow()
    fleet, adapter, _ = make_fleet([persona("a", triggers=[{"keywords": ["x"]}])], llm=llm)
    outcomes: list[str] = []
    fleet.outcomes.append(lambda outcome, action: outcomes.append(outcome))
    await fleet.dispatch(msg("x"))
    await asyncio.wait_for(llm.started.wait(), 2)
    loop = asyncio.get_running_loop()
    began = loop.time()
    await fleet.stop(grace=0.2)
    assert loop.time() - began < 1.5
    # The adapter was told the reply was cut, as if the model had stopped: it can mark what it showed.
    assert adapter.cut_off == ["half a"] and adapter.replies == []
    assert outcomes == ["cut_off"] and fleet.replying == 0
    assert (await fleet.dispatch(msg("x"))) is None and not fleet._tasks  # no new work after stop


async def test_stop_lets_replies_finish_within_grace() -> None:
    fleet, adapter, _ = make_fleet([persona("a", triggers=[{"keywords": ["x"]}])], reply_delay_seconds=[0.1, 0.1])
    await fleet.dispatch(msg("x"))
    await fleet.stop(grace=5)
    assert [t for _, t in adapter.replies] == [f"ok\n\n{DISCLOSURE}"]


# --- reload and settings that need a restart ----------------------------------------------------


async def test_reload_reports_settings_it_cannot_apply() -> None:
    fleet, _, _ = make_fleet([persona("skeptic")])
    cfg = fleet.config
    changed = cfg.model_copy(
        update={"retention_days": 7, "fleet": cfg.fleet.model_copy(update={"history_size": 9, "lease_seconds": 30})}
    )
    restart = apply(fleet, changed, [persona("skeptic")])
    assert {"retention_days", "fleet.history_size", "fleet.lease_seconds"} <= set(restart)


# --- several processes on one Redis: reload and why reach all of them ---------------------------


def persona_file(pid: str) -> str:
    return f"id: {pid}\nname: The {pid.title()}\nprompt: You are {pid}.\ntriggers: [{{mention: true}}]\n"


async def test_reload_and_why_reach_every_process_on_a_shared_redis(
    tmp_path: Path, redis_servers: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two fleet processes on one Redis: `botfleet reload` reloads both, and `botfleet why` finds an
    event through Redis whichever process handled it, without any HTTP endpoint."""

    server = redis_servers()  # a server of its own: the CLI uses the default key prefix
    (tmp_path / "personas").mkdir()
    for pid in ("skeptic", "nerd"):
        (tmp_path / "personas" / f"{pid}.yaml").write_text(persona_file(pid))
    config = tmp_path / "config.yaml"
    config.write_text(f"store: {server.url}\npersonas_dir: personas\nfleet: {{reply_delay_seconds: [0, 0]}}\n")
    cfg, personas = load_all(config)
    fleets: list[Fleet] = []
    ops: list[Ops] = []
    client: redis.asyncio.Redis | None = None
    for _ in range(2):
        fleet = build_fleet(cfg, personas, llm=CannedClient("ok"), state=open_redis_state(cfg))
        fleets.append(fleet)
        ops.append(Ops(fleet, config))
    try:
        for o in ops:
            await o.start()
        client = redis.asyncio.Redis.from_url(server.url)
        # Both subscribed to reload requests before one is sent.
        async with asyncio.timeout(5):
            while dict(await client.pubsub_numsub("botfleet:reload")).get(b"botfleet:reload") != 2:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        (tmp_path / "personas" / "optimist.yaml").write_text(persona_file("optimist"))
        assert await asyncio.to_thread(main, ["reload", "--config", str(config)]) == 0
        assert "sent to 2 running process(es)" in capsys.readouterr().err
        async with asyncio.timeout(5):
            while not all("optimist" in f.personas for f in fleets):  # noqa: ASYNC110
                await asyncio.sleep(0.02)

        plan = await fleets[1].handle(msg("@skeptic really?", id="e1", mentions=frozenset({"skeptic"})))
        assert plan.actions
        assert "test:e1" not in fleets[0].audit
        async with asyncio.timeout(5):
            while not await client.exists("botfleet:why:test:e1"):  # noqa: ASYNC110 - written in the background
                await asyncio.sleep(0.02)
        assert 0 < await client.ttl("botfleet:why:test:e1") <= 86400
        capsys.readouterr()
        assert await asyncio.to_thread(main, ["why", "test", "e1", "--config", str(config), "--json"]) == 0
        assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(explain(plan)))
        assert await asyncio.to_thread(main, ["why", "test", "nope", "--config", str(config)]) == 1
    finally:
        for o, f in zip(ops, fleets, strict=True):
            await o.close()
            await f.stop(0)
        if client is not None:
            await client.aclose()
