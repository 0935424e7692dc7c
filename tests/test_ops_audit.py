"""Metrics over HTTP, the /why audit and /usage, and `botfleet reload` and `botfleet why` reaching every
fleet process on a shared Redis."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio

from bots.app import build_fleet
from bots.cli import main
from bots.core.fleet import Fleet
from bots.core.plan import Plan
from bots.llm.canned import CannedClient
from bots.loading import load_all
from bots.ops.admin import AdminServer, explain
from bots.ops.control import Ops
from bots.ops.metrics import Metrics, reason_label
from bots.state.redis import open_redis_state
from tests.conftest import HUMAN, make_fleet, msg, persona
from tests.ops_world import BOB, Metered, say
from tests.test_fleet import cmd

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


async def check_metrics(port: int) -> None:
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


async def check_why(port: int, first: Plan) -> None:
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


async def check_usage(port: int, fleet: Fleet) -> None:
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
        await check_metrics(port)
        await check_why(port, first)
        await check_usage(port, fleet)
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
