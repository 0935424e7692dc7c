"""Routing-decision throughput of the rate limiters, memory and Redis.

    python bench/limits.py [--seconds 3] [--concurrency 512] [--limits open shipped]

Prints one JSON line per case on stdout:
    {"backend": "memory"|"redis", "candidates": 1|3|10, "decisions_per_s": x,
     "round_trips_per_decision": r, "limits": "open"|"shipped"}
and notes (CPU per decision on each side, decisions per call) on stderr. Starts its own
redis-server on a free port unless REDIS_URL is set.

A decision is what Fleet._route asks the limiter: every candidate persona with its five keys
(channel, persona, persona x channel, persona x user, cooldown), at most 3 admitted
(max_responders). Two sets of limits:

- open: bursts so large that nothing is ever blocked, so every admitted candidate writes all five
  keys. The worst case for Redis, whose CPU then goes mostly into writing keys with an expiry.
- shipped: the limits of personas/*.yaml and the config defaults, built by Fleet.rates itself, over
  200 personas (the shipped ones, cloned), 20,000 channels and 50,000 users. At this many decisions
  a second most candidates are blocked by a persona's own per-minute limit, as they would be in a
  real fleet: a check that reads keys and writes few.

The limiter is the one the fleet uses (FallbackRateLimiter over RedisRateLimiter). Decisions it made
locally because Redis was slow are not counted and are reported. Round trips are counted by the
server (EVALSHA calls), not by the client.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bots.config import FleetConfig
from bots.core.brain import Brain
from bots.core.fleet import Fleet
from bots.core.ports import Rate
from bots.llm.canned import CannedClient
from bots.persona import Persona, load_personas
from bots.state.memory import MemoryRateLimiter, MemoryStore
from bots.state.redis import FallbackRateLimiter, RedisHealth, RedisRateLimiter, make_client

ROOT = Path(__file__).resolve().parent.parent
MAX_GRANTS = 3
POOL = 8192  # distinct decisions, prepared before the clock starts (the fleet builds them in Fleet.rates)
# Open limits: a burst no key reaches in a run; one second of tat per grant keeps written keys alive.
BURST = 100_000

Decision = list[list[Rate]]


def open_pool(n: int) -> list[Decision]:
    rng = random.Random(n)
    pool = []
    for _ in range(POOL):
        channel = f"telegram:-100{rng.randrange(1000)}"
        user = str(rng.randrange(5000))
        decision = []
        for p in rng.sample(range(200), n):
            pid = f"persona{p}"
            decision.append(
                [
                    Rate(f"chan:{channel}", BURST, BURST, "channel_per_minute"),
                    Rate(f"p:{pid}", BURST, BURST, "per_minute"),
                    Rate(f"pc:{pid}:{channel}", BURST, BURST, "per_channel_per_minute"),
                    Rate(f"pu:{pid}:telegram:{user}", BURST, BURST, "per_user_per_minute"),
                    Rate(f"cd:{pid}:{channel}", BURST, BURST, "cooldown"),
                ]
            )
        pool.append(decision)
    return pool


def shipped_pool(n: int) -> list[Decision]:
    shipped = load_personas(ROOT / "personas")
    personas: list[Persona] = [
        shipped[i % len(shipped)].model_copy(update={"id": f"{shipped[i % len(shipped)].id}{i}"}) for i in range(200)
    ]
    cfg = FleetConfig()
    fleet = Fleet(cfg, personas, store=MemoryStore(), limiter=MemoryRateLimiter(), brain=Brain(CannedClient(), cfg.llm))
    rng = random.Random(n)
    pool = []
    for _ in range(POOL):
        conversation = f"telegram:-100{rng.randrange(20_000)}"
        user = str(rng.randrange(50_000))
        pool.append([fleet.rates(p, "telegram", conversation, user) for p in rng.sample(personas, n)])
    return pool


async def run_case(
    limiter: Any,
    pool: list[Decision],
    seconds: float,
    concurrency: int,
    measuring: Callable[[], Awaitable[None]] | None = None,
) -> tuple[int, float]:
    """Warm up, call `measuring`, then count decisions for `seconds` with `concurrency` in flight."""
    done = 0
    stop_at = 0.0
    size = len(pool)

    async def worker(start: int) -> None:
        nonlocal done
        i = start
        while time.perf_counter() < stop_at:
            await limiter.acquire(pool[i % size], MAX_GRANTS, time.time())
            i += 1
            done += 1

    # Warm up (script load, connections), then measure.
    stop_at = time.perf_counter() + min(0.5, seconds / 4)
    await asyncio.gather(*(worker(i * 7) for i in range(concurrency)))
    if measuring is not None:
        await measuring()
    done = 0
    start = time.perf_counter()
    stop_at = start + seconds
    await asyncio.gather(*(worker(i * 13) for i in range(concurrency)))
    return done, time.perf_counter() - start


async def evalsha_calls(client: Any) -> int:
    stats = await client.info("commandstats")
    return sum(int(stats.get(k, {}).get("calls", 0)) for k in ("cmdstat_evalsha", "cmdstat_eval"))


async def redis_cpu(client: Any) -> float:
    info = await client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def redis_case(url: str, pool: list[Decision], seconds: float, concurrency: int) -> dict[str, float]:
    """One case against Redis, through the limiter the fleet uses, measured by the server's counters."""
    client = make_client(url)
    # Keys of its own, deleted afterwards: REDIS_URL may point at a server that holds other data.
    prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    raw = RedisRateLimiter(client, prefix=prefix)
    health = RedisHealth(client)
    limiter = FallbackRateLimiter(raw, health)
    mark: dict[str, float] = {}

    async def measuring() -> None:
        mark.update(calls=await evalsha_calls(client), cpu=await redis_cpu(client), decisions=raw.decisions)
        mark["py"] = time.process_time()

    try:
        done, took = await run_case(limiter, pool, seconds, concurrency, measuring)
        py = time.process_time() - mark["py"]
        by_redis = raw.decisions - mark["decisions"]
        calls = await evalsha_calls(client) - mark["calls"]
        cpu = await redis_cpu(client) - mark["cpu"]
    finally:
        await limiter.close()
        cleanup = make_client(url, socket_timeout=10.0)
        batch = [key async for key in cleanup.scan_iter(match=f"{prefix}*", count=10_000)]
        for i in range(0, len(batch), 10_000):
            await cleanup.unlink(*batch[i : i + 10_000])
        await cleanup.aclose()
    return {
        "per_s": by_redis / took,
        "round_trips": calls / max(by_redis, 1),
        "per_call": by_redis / max(calls, 1),
        "redis_us": cpu / max(by_redis, 1) * 1e6,
        "py_us": py / max(done, 1) * 1e6,
        "local": done - by_redis,
        "overloaded": health.overloaded,
        "outages": health.outages,
    }


def emit(backend: str, n: int, limits: str, per_s: float, round_trips: float) -> None:
    line = {
        "backend": backend,
        "candidates": n,
        "decisions_per_s": round(per_s),
        "round_trips_per_decision": round(round_trips, 4),
        "limits": limits,
    }
    print(json.dumps(line), flush=True)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--concurrency", type=int, default=512, help="decisions in flight at once")
    ap.add_argument("--candidates", type=int, nargs="*", default=[1, 3, 10])
    ap.add_argument("--limits", nargs="*", choices=["open", "shipped"], default=["open", "shipped"])
    args = ap.parse_args()
    makers = {"open": open_pool, "shipped": shipped_pool}
    pools = {(lim, n): makers[lim](n) for lim in args.limits for n in args.candidates}
    # Half a million prepared Rate objects would make every full collection a 200 ms pause, charged
    # to whichever decision was waiting: they live until the end anyway, so take them out of the GC.
    gc.collect()
    gc.freeze()

    for (lim, n), pool in pools.items():
        done, took = await run_case(MemoryRateLimiter(), pool, args.seconds, args.concurrency)
        emit("memory", n, lim, done / took, 0.0)

    server = None
    url = os.environ.get("REDIS_URL")
    if not url:
        from tests.redis_server import RedisServer

        server = RedisServer()
        server.start()
        url = server.url
    try:
        for (lim, n), pool in pools.items():
            r = await redis_case(url, pool, args.seconds, args.concurrency)
            emit("redis", n, lim, r["per_s"], r["round_trips"])
            print(
                f"# redis, {lim} limits, {n} candidates: {r['per_call']:.0f} decisions per EVALSHA; CPU per "
                f"decision: redis-server {r['redis_us']:.1f} us, this process {r['py_us']:.1f} us; "
                f"{r['local']:.0f} decided locally (overloaded {r['overloaded']:.0f}, outages {r['outages']:.0f})",
                file=sys.stderr,
            )
        # One decision at a time: latency-bound, and exactly one round trip each.
        first = next(iter(pools.values()))
        r = await redis_case(url, first, min(args.seconds, 1.0), 1)
        print(
            f"# redis, one decision at a time: {r['per_s']:.0f} decisions/s, "
            f"{r['round_trips']:.3f} round trips per decision",
            file=sys.stderr,
        )
    finally:
        if server is not None:
            server.close()


if __name__ == "__main__":
    asyncio.run(main())
