"""The whole message path: `Fleet.handle` on memory and Redis, the reply path, loop lag, idle memory.

    python bench/pipeline.py [--seconds 2] [--concurrency 1 16 64 256] [--only handle reply lag memory]
                             [--root PATH]   # measure another checkout's code (A/B against main)

Prints one JSON line per case on stdout, notes on stderr:

- handle: {"backend", "personas", "concurrency", "msgs_per_s", "p50_ms", "p99_ms",
  "redis_round_trips_per_msg", "redis_commands_per_msg"} for memory and Redis, the shipped personas
  and 1,000 generated ones, at each concurrency; plus one line per backend with "offered_per_s": 1000
  (messages sent at a fixed rate rather than as fast as they are answered: its p99 is the latency
  target). Each message goes through `Fleet.handle`, then `ClaimKeeper.opened` and `settled` for
  each action as if carried out at once (no LLM), so the claim's writes (the decided actions, done)
  are counted too. A quarter of the
  messages mention a persona; the rest are ordinary chatter that may hit keywords; 2,000 channels,
  10,000 people, platform telegram.
- reply: {"case": "reply_path", "p50_ms", "p99_ms"}: from `Fleet.dispatch` to the adapter's first
  snapshot of the reply, with an LLM that answers at once (memory state, one message at a time).
- lag: {"case": "loop_lag", "replies_in_flight": 1000, "p99_ms", "max_ms"}: a 10 ms ticker's lateness
  while 1,000 replies wait on an LLM that takes 2 s (llm.max_concurrency raised so all are in flight).
- memory: {"case": "idle_persona", "personas": 10000, "kb_per_persona"}: what tracemalloc sees
  allocated for a fleet of 10,000 personas (validated from dicts as YAML loading does, so nothing is
  shared between them), divided by 10,000.

Counting Redis work at the server. Before and after each measured window the bench reads
`INFO stats` and `INFO commandstats` of its own redis-server (started on a free port, FLUSHALL
between cases; REDIS_URL is ignored so no other client's traffic is counted):

- commands = the change in the sum of `calls` over every command in `commandstats`. Redis counts
  the commands a Lua script runs as well as the EVALSHA itself, so this is every command the server
  executed for the messages ("commands run at the server").
- round trips = the change in `total_reads_processed`: each request (a single command, a pipeline,
  or an EVALSHA carrying a batch of messages) reaches the server as one read of the client's socket,
  and its reply is awaited before the caller goes on. `total_commands_processed` cannot be used: it
  also counts commands run inside scripts. A request larger than the server's read buffer (16 KB)
  takes more than one read, so a big batch counts as several round trips: an upper bound.
  Background traffic (claim renewals, the choice mirror, the epoch watch) counts too.
Both subtract the bench's own two INFO calls per reading.

The redis-server shares the machine's two cores with this process; `redis-benchmark -q -n 100000
-t set,get -P 1` on the same machine gives the ceiling one round trip at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import json
import os
import random
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--seconds", type=float, default=2.0)
ap.add_argument("--concurrency", type=int, nargs="*", default=[1, 16, 64, 256])
ap.add_argument("--only", nargs="*", choices=["handle", "reply", "lag", "memory"], default=[])
ap.add_argument("--backends", nargs="*", choices=["memory", "redis"], default=["memory", "redis"])
ap.add_argument("--sizes", nargs="*", choices=["shipped", "1000"], default=["shipped", "1000"])
ap.add_argument("--root", type=Path, default=None, help="the checkout whose bots/ to measure")
ARGS = ap.parse_args()
BENCH = Path(__file__).resolve().parent.parent
ROOT = (ARGS.root or BENCH).resolve()
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(BENCH))  # tests.redis_server comes from this checkout

from bots.app import build_fleet  # noqa: E402
from bots.config import FleetConfig  # noqa: E402
from bots.core.brain import IncompleteReply  # noqa: E402
from bots.core.events import Author, Message, Notice, React, Reply, Sent  # noqa: E402
from bots.core.ports import Chunk, LLMRequest  # noqa: E402
from bots.llm.canned import CannedClient  # noqa: E402
from bots.persona import Persona, load_personas  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

SHIPPED = load_personas(BENCH / "personas")
CHATTER = "the a i you we should think about my job friend money today really maybe not sure plan idea help".split()
POOL = 8192


def generated(n: int, *, free_will: bool = True) -> list[Persona]:
    """n personas validated one by one from the shipped ones' fields, with ids, names, keywords and
    regexes of their own (clones sharing keywords would all answer the same words, which no real fleet
    of a thousand personas does)."""
    out = []
    for i in range(n):
        base = SHIPPED[i % len(SHIPPED)].model_dump()
        base.update(id=f"{base['id']}{i}", name=f"{base['name']} {i}")
        if not free_will:  # only the persona named answers: the reply and lag cases count replies
            base["triggers"] = [t for t in base["triggers"] if any(v for k, v in t.items() if k != "chance")]
        for trigger in [*base["triggers"], *base["reactions"]]:
            if trigger.get("keywords"):
                trigger["keywords"] = [f"{k.replace(' ', '')}{i}" for k in trigger["keywords"]]
            if trigger.get("regex"):
                trigger["regex"] = rf"\bpattern{i}\b"
        out.append(Persona.model_validate(base))
    return out


def pool(personas: list[Persona], rng: random.Random) -> list[Message]:
    keywords = [k for p in personas for t in p.triggers for k in (t.keywords or [])]
    words = CHATTER + rng.sample(keywords, min(200, len(keywords)))
    msgs = []
    for _ in range(POOL):
        text = " ".join(rng.choice(words) for _ in range(rng.randrange(4, 14)))
        mentions: frozenset[str] = frozenset()
        if rng.random() < 0.25:
            p = rng.choice(personas)
            text = f"@{p.id} {text}"
            mentions = frozenset({p.id})
        user = str(rng.randrange(10_000))
        msgs.append(
            Message(
                platform="telegram",
                id="",
                channel=f"-100{rng.randrange(2000)}",
                author=Author(id=user, name=f"user{user}"),
                text=text,
                mentions=mentions,
            )
        )
    return msgs


def config(store: str, **llm: Any) -> FleetConfig:
    return FleetConfig.model_validate({"store": store, "fleet": {"reply_delay_seconds": [0, 0]}, "llm": llm})


async def server_counts(client: Any) -> tuple[int, int]:
    stats = await client.info("stats")
    cmds = await client.info("commandstats")
    return int(stats["total_reads_processed"]), sum(int(v["calls"]) for v in cmds.values())


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return 0.0
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


class Run:
    def __init__(self, fleet: Any, msgs: list[Message], tag: str) -> None:
        self.fleet = fleet
        self.msgs = msgs
        self.tag = tag
        self.n = 0
        self.latencies: list[float] = []

    async def one(self) -> None:
        self.n += 1
        msg = self.msgs[self.n % len(self.msgs)]
        msg = dataclasses.replace(msg, id=f"{self.tag}{self.n}")
        t = time.perf_counter()
        plan = await self.fleet.handle(msg)
        self.latencies.append(time.perf_counter() - t)
        # What dispatch does next, with every action carried out at once: the claim's writes count.
        keeper = self.fleet.keeper
        keeper.opened(plan)
        for action in plan.actions:
            keeper.settled(plan.event.key, action, "sent")

    async def closed_loop(self, seconds: float, concurrency: int) -> int:
        stop_at = time.perf_counter() + seconds
        done = 0

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < stop_at:
                await self.one()
                done += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return done

    async def open_loop(self, seconds: float, rate: float) -> int:
        """Messages started at a fixed rate whether or not earlier ones are answered."""
        start = time.perf_counter()
        tasks = []
        i = 0
        while (now := time.perf_counter()) - start < seconds:
            due = start + i / rate
            if due > now:
                await asyncio.sleep(due - now)
            tasks.append(asyncio.ensure_future(self.one()))
            i += 1
        await asyncio.gather(*tasks)
        return i


async def handle_case(backend: str, url: str, size: str, concurrency: int, offered: float | None) -> dict[str, Any]:
    personas = SHIPPED if size == "shipped" else generated(1000)
    msgs = pool(personas, random.Random(7))
    client = None
    if backend == "redis":
        from redis.asyncio import Redis

        client = Redis.from_url(url)
        await client.flushall()
    fleet = build_fleet(config("memory://" if backend == "memory" else url), personas, llm=CannedClient())
    run = Run(fleet, msgs, f"{backend}{size}{concurrency}-")
    await run.closed_loop(min(0.5, ARGS.seconds / 4), concurrency)  # warm up: scripts, connections
    await asyncio.sleep(0.05)
    run.latencies.clear()
    before = await server_counts(client) if client else (0, 0)
    start = time.perf_counter()
    if offered:
        done = await run.open_loop(ARGS.seconds, offered)
    else:
        done = await run.closed_loop(ARGS.seconds, concurrency)
    took = time.perf_counter() - start
    await asyncio.sleep(0.05)  # the claim writes started in the window land
    after = await server_counts(client) if client else (2, 2)
    await fleet.keeper.close()
    await fleet.stop(0)
    if client is not None:
        await client.aclose()
    line: dict[str, Any] = {
        "backend": backend,
        "personas": len(personas),
        "concurrency": concurrency if not offered else None,
        "msgs_per_s": round(done / took),
        "p50_ms": round(pct(run.latencies, 0.5) * 1000, 3),
        "p99_ms": round(pct(run.latencies, 0.99) * 1000, 3),
        "redis_round_trips_per_msg": round((after[0] - before[0] - 2) / done, 3),
        "redis_commands_per_msg": round((after[1] - before[1] - 2) / done, 3),
    }
    if offered:
        line["offered_per_s"] = offered
    return line


@dataclasses.dataclass
class FirstSend:
    """An adapter that notes when each reply's first snapshot reaches it."""

    platform: str = "telegram"
    text_limit: int = 4096
    firsts: dict[str, float] = dataclasses.field(default_factory=dict)

    async def start(self, fleet: Any) -> None:
        return None

    def accounts(self) -> list[str]:
        return []

    async def connect(self, account: str) -> bool:
        return True

    async def disconnect(self, account: str) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def deliver(self, reply: Reply, persona: Persona, snapshots: AsyncIterator[str]) -> Sent:
        try:
            async for _ in snapshots:
                self.firsts.setdefault(reply.reply_to or "", time.perf_counter())
        except IncompleteReply:
            return Sent(complete=False)
        return Sent(message_ids=("x",), text="ok")

    async def react(self, react: React, persona: Persona) -> None:
        return None

    async def notify(self, notice: Notice) -> None:
        return None


class SlowLLM:
    name = "slow"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def stream(self, request: LLMRequest) -> AsyncIterator[Chunk]:
        await asyncio.sleep(self.seconds)
        yield Chunk(text="a considered answer", finish_reason="stop")

    async def close(self) -> None:
        return None


def mentions(personas: list[Persona], n: int, tag: str) -> list[Message]:
    """n messages, each naming another persona in its own channel: nothing limits them."""
    return [
        Message(
            platform="telegram",
            id=f"{tag}{i}",
            channel=f"-200{i}",
            author=Author(id=f"u{i}", name=f"user{i}"),
            text=f"@{personas[i % len(personas)].id} zzq",
            mentions=frozenset({personas[i % len(personas)].id}),
        )
        for i in range(n)
    ]


async def reply_case() -> dict[str, Any]:
    personas = generated(1000, free_will=False)
    fleet = build_fleet(config("memory://"), personas, llm=CannedClient("ok"))
    adapter = FirstSend()
    fleet.attach(adapter)
    await fleet.start(connect=False)
    took = []
    for msg in mentions(personas, 2000, "r"):
        t = time.perf_counter()
        await fleet.dispatch(msg)
        await fleet.drain()
        if msg.id in adapter.firsts:
            took.append(adapter.firsts[msg.id] - t)
    await fleet.stop(0)
    print(f"# reply path: {len(took)} of 2000 replies sent", file=sys.stderr)
    return {"case": "reply_path", "p50_ms": round(pct(took, 0.5) * 1000, 3), "p99_ms": round(pct(took, 0.99) * 1000, 3)}


async def lag_case() -> dict[str, Any]:
    """Messages arrive one per loop turn, as from a socket; the ticker's lateness is reported over the
    whole run (the burst of starting 1,000 replies included) and over the wait with all in flight."""
    personas = generated(1000, free_will=False)
    fleet = build_fleet(config("memory://", max_concurrency=2000), personas, llm=SlowLLM(2.0))
    adapter = FirstSend()
    fleet.attach(adapter)
    await fleet.start(connect=False)
    loop = asyncio.get_running_loop()
    ticks: list[tuple[float, float]] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            due = loop.time() + 0.01
            await asyncio.sleep(0.01)
            ticks.append((due, loop.time() - due))

    tick = asyncio.create_task(ticker())
    arrivals = [asyncio.ensure_future(fleet.dispatch(msg)) for msg in mentions(personas, 1000, "l")]
    await asyncio.gather(*arrivals)
    for _ in range(200):  # until every reply has started (or the first one is already sent)
        if fleet.replying >= 1000 or adapter.firsts:
            break
        await asyncio.sleep(0.01)
    in_flight, full_from = fleet.replying, loop.time()
    await fleet.drain()
    stop.set()
    await tick
    await fleet.stop(0)
    first = min(adapter.firsts.values(), default=0.0)
    waiting = [
        late for due, late in ticks if due >= full_from and due + late < loop.time() - (time.perf_counter() - first)
    ]
    everything = [late for _, late in ticks]
    return {
        "case": "loop_lag",
        "replies_in_flight": in_flight,
        "replies_sent": len(adapter.firsts),
        "p99_ms": round(pct(waiting, 0.99) * 1000, 2),
        "max_ms": round(max(waiting, default=0.0) * 1000, 2),
        "burst_p99_ms": round(pct(everything, 0.99) * 1000, 2),
        "burst_max_ms": round(max(everything, default=0.0) * 1000, 2),
    }


def memory_case(n: int = 10_000) -> dict[str, Any]:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    personas = generated(n)
    fleet = build_fleet(config("memory://"), personas, llm=CannedClient())
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    used = sum(s.size_diff for s in after.compare_to(before, "filename"))
    assert len(fleet.personas) == n
    return {"case": "idle_persona", "personas": n, "kb_per_persona": round(used / n / 1024, 2)}


def emit(line: dict[str, Any]) -> None:
    print(json.dumps(line), flush=True)


async def main() -> None:
    only = set(ARGS.only or ["handle", "reply", "lag", "memory"])
    print(f"# measuring the code in {ROOT}", file=sys.stderr)
    if "handle" in only:
        server = RedisServer()
        server.start()
        try:
            for backend in ARGS.backends:
                for size in ARGS.sizes:
                    for c in ARGS.concurrency:
                        emit(await handle_case(backend, server.url, size, c, None))
                emit(await handle_case(backend, server.url, "shipped", 0, 1000.0))
        finally:
            server.close()
    if "reply" in only:
        emit(await reply_case())
    if "lag" in only:
        emit(await lag_case())
    if "memory" in only:
        emit(memory_case())


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    asyncio.run(main())
