"""Many processes, one Redis: the message decision (`Fleet.handle`) run by N OS processes at once.

    python bench/processes.py [--processes 1 2 4] [--seconds 5] [--concurrency 64]

Each process builds the fleet as `botfleet run` does (the shipped personas and config defaults, the
Redis store with its fallback, claims and limiter) and keeps `--concurrency` messages in its own
`Fleet.handle` at once for `--seconds`; every process starts at the same wall-clock moment. Messages
are spread over 2,000 channels and 20,000 people; one in four mentions a persona (so it reaches the
limiter and may be answered), the rest trigger nobody. Replies are decided, never written: no LLM.

Prints one JSON line per process count on stdout:
    {"processes", "concurrency", "msgs_per_s", "per_process_msgs_per_s", "p50_ms", "p99_ms",
     "redis_commands_per_msg", "redis_scripts_per_msg", "redis_cpu_share", "redis_us_per_msg",
     "load_before", "redis_fallbacks"}
where commands and scripts are counted by the server (INFO commandstats) over the measured window
(commands include those a script runs inside Redis, so they are not round trips; scripts are);
redis_cpu_share is redis-server's CPU time over the window (1.0 = one core, Redis's ceiling: it runs
commands on one thread) and redis_us_per_msg that CPU time per message (what bounds one Redis,
whatever else the machine is doing); load_before is the machine's 1-minute load average as the case
began; redis_fallbacks counts Redis calls that timed out (overloaded) and were decided locally.
Starts its own redis-server on a free port unless REDIS_URL is set.

The processes share the machine with redis-server: on a 2-core machine, 4 processes and Redis compete
for the same two cores, so the figures say how the design scales only up to the cores there are.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bots.app import build_fleet, make_state
from bots.config import FleetConfig
from bots.core.events import Author, Message
from bots.llm.canned import CannedClient
from bots.persona import load_personas
from bots.state.redis import make_client

ROOT = Path(__file__).resolve().parent.parent
CHANNELS, PEOPLE = 2000, 20_000
MENTION_SHARE = 4  # one message in this many mentions a persona
WARMUP = 0.5


def fleet_config(url: str) -> FleetConfig:
    return FleetConfig.model_validate({"store": url, "pid_file": None, "about": {"disclosure": ""}})


def message(rng: random.Random, worker: int, n: int, persona_ids: list[str]) -> Message:
    channel = f"c{rng.randrange(CHANNELS)}"
    person = f"u{rng.randrange(PEOPLE)}"
    mentioned: frozenset[str] = frozenset()
    text = "did anyone see the game last night? the second half was something else"
    if n % MENTION_SHARE == 0:
        pid = rng.choice(persona_ids)
        mentioned = frozenset({pid})
        text = f"@{pid} what do you make of this?"
    return Message(
        platform="bench",
        id=f"w{worker}-{n}",
        channel=channel,
        author=Author(id=person, name=person),
        text=text,
        mentions=mentioned,
        channel_name=channel,
    )


async def worker(url: str, prefix: str, index: int, start_at: float, seconds: float, concurrency: int) -> None:
    personas = load_personas(ROOT / "personas")
    cfg = fleet_config(url)
    fleet = build_fleet(cfg, personas, llm=CannedClient("-"), state=make_state(cfg, redis_prefix=prefix))
    ids = [p.id for p in personas]
    rng = random.Random(index)
    counter = iter(range(10**12))
    latencies: list[float] = []
    measure_from, end = start_at, start_at + seconds

    async def loop() -> None:
        while True:
            sent = time.time()
            if sent >= end:
                return
            await fleet.handle(message(rng, index, next(counter), ids))
            if sent >= measure_from:
                latencies.append(time.time() - sent)

    # Connect and load scripts before the clock starts, then wait for the common start.
    await asyncio.gather(*(fleet.handle(message(rng, index, next(counter), ids)) for _ in range(concurrency)))
    await asyncio.sleep(max(0.0, start_at - WARMUP - time.time()))
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    # Calls that gave up on a slow or absent Redis and were decided locally (bots/state/redis/health.py).
    health = getattr(fleet.limiter, "health", None)
    fallbacks = (health.overloaded + health.outages) if health is not None else 0
    await fleet.stop(0)
    latencies.sort()
    print(
        json.dumps(
            {
                "done": len(latencies),
                "p50_ms": statistics.median(latencies) * 1000 if latencies else 0.0,
                "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000 if latencies else 0.0,
                "fallbacks": fallbacks,
            }
        ),
        flush=True,
    )


async def server_counters(url: str) -> tuple[int, int, float]:
    """(commands run, scripts run, CPU seconds) so far, as redis-server counts them."""
    client = make_client(url)
    try:
        stats: dict[str, Any] = await client.info("commandstats")
        cpu: dict[str, Any] = await client.info("cpu")
    finally:
        await client.aclose()
    calls = {k.removeprefix("cmdstat_"): int(v.get("calls", 0)) for k, v in stats.items()}
    commands = sum(n for name, n in calls.items() if name != "info")
    scripts = sum(calls.get(name, 0) for name in ("evalsha", "eval", "fcall", "evalsha_ro", "eval_ro"))
    return commands, scripts, float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


async def run_case(url: str, processes: int, seconds: float, concurrency: int) -> dict[str, Any]:
    prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    load = round(os.getloadavg()[0], 2)  # what else the machine was doing (1-minute load average)
    # Time enough for every process to import, load personas and connect before the common start.
    start_at = time.time() + 4.0 + processes
    procs = [
        await asyncio.create_subprocess_exec(
            *[
                sys.executable,
                __file__,
                "--worker",
                str(i),
                "--url",
                url,
                "--prefix",
                prefix,
                "--start-at",
                repr(start_at),
                "--seconds",
                str(seconds),
                "--concurrency",
                str(concurrency),
            ],
            stdout=asyncio.subprocess.PIPE,
        )
        for i in range(processes)
    ]
    await asyncio.sleep(max(0.0, start_at - time.time()))
    before = await server_counters(url)
    await asyncio.sleep(seconds)
    after = await server_counters(url)
    results = []
    for p in procs:
        out, _ = await p.communicate()
        results.append(json.loads(out.decode().strip().splitlines()[-1]))
    await cleanup(url, prefix)
    done = sum(r["done"] for r in results)
    return {
        "processes": processes,
        "concurrency": concurrency,
        "msgs_per_s": round(done / seconds),
        "per_process_msgs_per_s": [round(r["done"] / seconds) for r in results],
        "p50_ms": round(statistics.median(r["p50_ms"] for r in results), 2),
        "p99_ms": round(max(r["p99_ms"] for r in results), 2),
        "redis_commands_per_msg": round((after[0] - before[0]) / max(done, 1), 2),
        "redis_scripts_per_msg": round((after[1] - before[1]) / max(done, 1), 2),
        "redis_cpu_share": round((after[2] - before[2]) / seconds, 2),
        "redis_us_per_msg": round((after[2] - before[2]) / max(done, 1) * 1e6, 1),
        "load_before": load,
        "redis_fallbacks": sum(r["fallbacks"] for r in results),
    }


async def cleanup(url: str, prefix: str) -> None:
    client = make_client(url, socket_timeout=10.0)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=10_000)]
        for i in range(0, len(keys), 10_000):
            await client.unlink(*keys[i : i + 10_000])
    finally:
        await client.aclose()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--processes", type=int, nargs="*", default=[1, 2, 4])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--concurrency", type=int, default=64, help="messages in flight per process")
    ap.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--url", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--prefix", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--start-at", type=float, default=0.0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker is not None:
        await worker(args.url, args.prefix, args.worker, args.start_at, args.seconds, args.concurrency)
        return
    server = None
    url = os.environ.get("REDIS_URL")
    if not url:
        from tests.redis_server import RedisServer

        server = RedisServer()
        server.start()
        url = server.url
    try:
        for n in args.processes:
            print(json.dumps(await run_case(url, n, args.seconds, args.concurrency)), flush=True)
    finally:
        if server is not None:
            server.close()


if __name__ == "__main__":
    asyncio.run(main())
