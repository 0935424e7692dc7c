"""Routing-decision throughput of the rate limiters, memory and Redis.

    python bench/limits.py [--seconds 3] [--concurrency 512]

Prints one JSON line per case on stdout:
    {"backend": "memory"|"redis", "candidates": 1|3|10, "decisions_per_s": x, "round_trips_per_decision": r}
and notes (Redis CPU per decision, batch sizes) on stderr. Starts its own redis-server on a free port
unless REDIS_URL is set.

A decision is what Fleet._route asks for: every candidate persona with its five keys (channel,
persona, persona x channel, persona x user, cooldown), at most 3 admitted (max_responders). Limits
are wide open, so every admitted candidate writes all its keys: the expensive case for Redis. The
limiter is the one the fleet uses (FallbackRateLimiter over RedisRateLimiter); decisions it made
locally because Redis was slow are not counted, and any are reported. Round trips are counted by
the server (EVALSHA calls), not by the client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bots.ratelimit import MemoryRateLimiter, Rate
from bots.redis_backend import FallbackRateLimiter, RedisHealth, RedisRateLimiter, make_client

MAX_GRANTS = 3
# Bursts far larger than any key sees in a run: nothing is ever blocked, every admitted candidate
# writes all five keys. The emission interval sets how long a written key lives.
BURST = 100_000


def candidates(rng: random.Random, n: int, interval: float) -> list[list[Rate]]:
    channel = f"telegram:-100{rng.randrange(1000)}"
    user = str(rng.randrange(5000))
    period = BURST * interval
    out = []
    for p in rng.sample(range(200), n):
        pid = f"persona{p}"
        out.append(
            [
                Rate(f"chan:{channel}", BURST, period, "channel_per_minute"),
                Rate(f"p:{pid}", BURST, period, "per_minute"),
                Rate(f"pc:{pid}:{channel}", BURST, period, "per_channel_per_minute"),
                Rate(f"pu:{pid}:telegram:{user}", BURST, period, "per_user_per_minute"),
                Rate(f"cd:{pid}:{channel}", BURST, period, "cooldown"),
            ]
        )
    return out


async def run_case(
    limiter: Any,
    n: int,
    seconds: float,
    concurrency: int,
    interval: float,
    measuring: Callable[[], Awaitable[None]] | None = None,
) -> tuple[int, float]:
    """Warm up, call `measuring`, then count decisions for `seconds` with `concurrency` in flight."""
    rng = random.Random(n)
    # Built beforehand (the fleet builds them in Fleet.rates, outside the limiter); 4096 distinct
    # decisions over 1000 channels, 200 personas and 5000 users keep most keys distinct per batch.
    pool = [candidates(rng, n, interval) for _ in range(4096)]
    done = 0
    stop_at = 0.0

    async def worker(start: int) -> None:
        nonlocal done
        i = start
        while time.perf_counter() < stop_at:
            await limiter.acquire(pool[i & 4095], MAX_GRANTS, time.time())
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


async def redis_case(url: str, n: int, seconds: float, concurrency: int, interval: float) -> dict[str, float]:
    """One case against Redis, through the limiter the fleet uses, measured by the server's counters."""
    client = make_client(url)
    await client.flushdb()
    raw = RedisRateLimiter(client, prefix="bench:")
    health = RedisHealth(client)
    limiter = FallbackRateLimiter(raw, health)
    mark: dict[str, float] = {}

    async def measuring() -> None:
        mark.update(calls=await evalsha_calls(client), cpu=await redis_cpu(client), decisions=raw.decisions)
        mark["py"] = time.process_time()

    try:
        done, took = await run_case(limiter, n, seconds, concurrency, interval, measuring)
        py = time.process_time() - mark["py"]
        by_redis = raw.decisions - mark["decisions"]
        calls = await evalsha_calls(client) - mark["calls"]
        cpu = await redis_cpu(client) - mark["cpu"]
    finally:
        await limiter.close()
    return {
        "per_s": by_redis / took,
        "round_trips": calls / max(by_redis, 1),
        "per_call": by_redis / max(calls, 1),
        "cpu_us": cpu / max(by_redis, 1) * 1e6,
        "py_us": py / max(done, 1) * 1e6,
        "local": done - by_redis,
        "overloaded": health.overloaded,
        "outages": health.outages,
    }


def emit(backend: str, n: int, per_s: float, round_trips: float) -> None:
    line = {
        "backend": backend,
        "candidates": n,
        "decisions_per_s": round(per_s),
        "round_trips_per_decision": round(round_trips, 4),
    }
    print(json.dumps(line), flush=True)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--concurrency", type=int, default=512, help="decisions in flight at once")
    ap.add_argument("--candidates", type=int, nargs="*", default=[1, 3, 10])
    ap.add_argument(
        "--interval",
        type=float,
        default=1.0,
        help="seconds a grant adds to a key's tat, i.e. how long written keys live (0.001: churn)",
    )
    args = ap.parse_args()

    for n in args.candidates:
        done, took = await run_case(MemoryRateLimiter(), n, args.seconds, args.concurrency, args.interval)
        emit("memory", n, done / took, 0.0)

    server = None
    url = os.environ.get("REDIS_URL")
    if not url:
        from tests.redis_server import RedisServer

        server = RedisServer()
        server.start()
        url = server.url
    try:
        for n in args.candidates:
            r = await redis_case(url, n, args.seconds, args.concurrency, args.interval)
            emit("redis", n, r["per_s"], r["round_trips"])
            print(
                f"# redis, {n} candidates: {r['per_call']:.0f} decisions per EVALSHA, CPU per decision: "
                f"redis-server {r['cpu_us']:.1f} us, this process {r['py_us']:.1f} us; "
                f"{r['local']:.0f} decided locally (overloaded {r['overloaded']:.0f}, outages {r['outages']:.0f})",
                file=sys.stderr,
            )
        # One decision at a time: the latency-bound case, where each decision is its own round trip.
        r = await redis_case(url, 3, min(args.seconds, 1.0), 1, args.interval)
        print(
            f"# redis, 3 candidates, one decision at a time: {r['per_s']:.0f} decisions/s, "
            f"{r['round_trips']:.3f} round trips per decision",
            file=sys.stderr,
        )
    finally:
        if server is not None:
            server.close()


if __name__ == "__main__":
    asyncio.run(main())
