"""What care mode in the Store costs per message on Redis: the round trips and the time of
`Fleet.handle` (decision only, no reply written), with care mode on and off.

Starts its own redis-server on a free port. Three kinds of human message, each from its own person:
- "nobody": no trigger matches, no persona would answer: no care read at all;
- "answered": a persona is mentioned: one HGET of the person's care record;
- "in care": the person is in care (put there by another process): the same one HGET, and the reply
  is planned with the care instruction.

Prints one line per kind and setting: Redis commands per message by name, and µs per message.
Run: python bench/care.py [--n 400]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from bots.config import FleetConfig
from bots.core.brain import Brain
from bots.core.events import Author, Message
from bots.core.fleet import Fleet
from bots.llm.canned import CannedClient
from bots.persona import Persona
from bots.state.redis import open_redis_state
from tests.redis_server import RedisServer

SKEPTIC = Persona.model_validate(
    {"id": "skeptic", "name": "The Skeptic", "prompt": "You are a skeptic.", "triggers": [{"mention": True}]}
)


def commands(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


async def measure(url: str, kind: str, care: bool, n: int, prefix: str) -> tuple[dict[str, float], float]:
    cfg = FleetConfig.model_validate(
        {"store": url, "safety": {"care": {"enabled": care}}, "fleet": {"reply_delay_seconds": [0, 0]}}
    )
    store, limiter = open_redis_state(cfg, prefix=prefix)
    fleet = Fleet(
        cfg, [SKEPTIC], store=store, limiter=limiter, brain=Brain(CannedClient(), cfg.llm), rng=random.Random(1)
    )
    now = time.time()
    users = [f"u{i}" for i in range(n)]
    if kind == "in care":
        for user in users:
            await store.primary.set_care("bench", user, f"bench:c{user}", now + 1800, now)

    def message(i: int, user: str) -> Message:
        text = "@skeptic what now?" if kind != "nobody" else "just talking"
        mentions = frozenset({"skeptic"}) if kind != "nobody" else frozenset()
        return Message("bench", f"{prefix}{i}", f"c{user}", Author(id=user, name=user), text, mentions=mentions)

    await fleet.handle(message(-1, "warmup"))  # scripts loaded, background tasks started
    with redis.Redis.from_url(url) as client:
        before = commands(client)
        start = time.perf_counter()
        for i, user in enumerate(users):
            await fleet.handle(message(i, user))
        took = time.perf_counter() - start
        after = commands(client)
    await fleet.stop(grace=0)
    per = {k: (after[k] - before.get(k, 0)) / n for k in after if after[k] != before.get(k, 0)}
    return per, took / n * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400)
    args = parser.parse_args()
    # Each run's new key prefix looks to the store like a Redis that lost its data: not news here.
    logging.getLogger("botfleet").setLevel(logging.ERROR)
    with RedisServer() as server:
        for kind in ("nobody", "answered", "in care"):
            for care in (False, True):
                per, us = await measure(server.url, kind, care, args.n, f"b{kind[0]}{int(care)}:")
                calls = " ".join(f"{k}={v:.2f}" for k, v in sorted(per.items()) if k != "info")
                print(f"{kind:9} care={'on ' if care else 'off'} {us:7.0f} µs/msg  {calls}")


if __name__ == "__main__":
    asyncio.run(main())
