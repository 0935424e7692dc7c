"""The fleet under faults: what each fault costs in latency, replies, duplicates and opt-outs.

    python bench/faults.py [--only frozen-redis slow-redis ...] [--rate 12]

Starts its own redis-server on a free port and the fake OpenAI endpoint (tests/fakes), then runs each
scenario on two fleet processes (in-process `build_fleet`, Redis store, the real openai SDK, a
recording adapter) that both receive every message, as two processes holding different bot accounts
of one Telegram group or Discord guild do. Five people write: u1..u3; Ann, who opted out before the
run and whose messages both processes handled before the fault; and Cy, who opted out on process A
and first writes during the fault. A scenario is 1 s of traffic, the fault for 3 s, 2 s more traffic,
then the replies in flight are waited for.

Scenarios: baseline, frozen-redis (SIGSTOP for the fault), slow-redis (60 ms each way through a proxy,
the whole run), redis-flush (FLUSHALL as the fault starts), llm-hang (the endpoint answers nothing),
llm-500 (every call answers 500), 1mb-message (every fourth message is 1 MB, with a persona whose regex
backtracks catastrophically on Python's `re`).

Per scenario, one JSON line on stdout, then a table:
- worst_handle_ms, median_handle_ms: `Fleet.handle` (the decision: dedupe, opt-out, routing, limits).
- worst_resolve_s: the longest time from a message's arrival to its reply being sent or dropped.
- answered / expected: messages that got a reply; every message from u1..u3 mentions one persona.
- dropped: replies given up with a reason (an LLM timeout, `llm:circuit_open`, ...), by reason.
- lost: expected messages neither answered nor dropped with a reason: silently lost.
- duplicates: messages answered more than once (by either process).
- optout_seen / optout_unseen: whether Ann / Cy got no reply at all.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bots.app import build_fleet, make_state
from bots.config import FleetConfig
from bots.core.brain import IncompleteReply
from bots.core.events import Action, Author, Command, Event, Message, Reply, Sent
from bots.core.fleet import Fleet
from bots.core.plan import Plan
from bots.persona import Persona
from tests.fakes.openai_server import Delay, FakeOpenAI, Status
from tests.headless import Headless, final_text
from tests.redis_server import RedisServer, SlowProxy

PLATFORM = "bench"
PERSONAS = ("skeptic", "nerd", "stoic", "realist")
PEOPLE = ("u1", "u2", "u3")
ANN, CY = "ann", "cy"  # opted out: Ann seen by both processes before the fault, Cy by process A only
PRE, FAULT, POST = 1.0, 3.0, 2.0
LLM_TIMEOUT = 2.0
BIG = 1_000_000
# Python's re takes minutes on "a" * 36 + "!" with this; the fleet's engine must not care.
EVIL = Persona.model_validate(
    {"id": "evil", "name": "Evil", "prompt": "You are evil.", "triggers": [{"regex": "(a+)+$"}]}
)


def personas() -> list[Persona]:
    made = [
        Persona.model_validate({"id": p, "name": p.title(), "prompt": f"You are {p}.", "triggers": [{"mention": True}]})
        for p in PERSONAS
    ]
    return [*made, EVIL]


def config(store: str, fake: FakeOpenAI) -> FleetConfig:
    llm: dict[str, Any] = {
        "provider": "openai",
        "model": "fake-gpt",
        "base_url": fake.base_url,
        "api_key": "bench-not-a-key",
    }
    # A 2 s timeout and breaker pause keep the run short; the rules are the same at the defaults.
    llm |= {"timeout_seconds": LLM_TIMEOUT, "breaker_seconds": 2.0}
    # No limit may refuse a reply: every reply not sent is the fault's doing.
    fleet = {"reply_delay_seconds": [0, 0], "max_responders": 1, "max_bot_chain": 0, "channel_per_minute": 100_000}
    return FleetConfig.model_validate({"store": store, "llm": llm, "fleet": fleet})


@dataclass
class Tally:
    """What became of every message, across both processes."""

    arrived: dict[str, float] = field(default_factory=dict)
    expected: set[str] = field(default_factory=set)
    author: dict[str, str] = field(default_factory=dict)
    sent: Counter[str] = field(default_factory=Counter)
    dropped: dict[str, str] = field(default_factory=dict)
    resolved: dict[str, float] = field(default_factory=dict)
    handle: list[float] = field(default_factory=list)

    def resolve(self, message_id: str) -> None:
        self.resolved.setdefault(message_id, time.perf_counter())

    def on_outcome(self, outcome: str, action: Action) -> None:
        if isinstance(action, Reply) and action.reply_to and outcome != "sent":
            self.dropped.setdefault(action.reply_to, outcome)
            self.resolve(action.reply_to)

    def on_plan(self, plan: Plan) -> None:
        """A reply refused at decision time (the breaker open, a budget) is dropped with its reason."""
        skips = [d.reason for d in plan.decisions if d.action == "skip" and d.persona_id != EVIL.id]
        # (A notice may still go out, e.g. that the persona cannot answer now: the reply is dropped.)
        replies = [a for a in plan.actions if isinstance(a, Reply)]
        if isinstance(plan.event, Message) and skips and not replies and not plan.note:
            self.dropped.setdefault(plan.event.id, skips[0])
            self.resolve(plan.event.id)

    def summary(self) -> dict[str, Any]:
        answered = {m for m in self.expected if self.sent[m]}
        dropped = {m: r for m, r in self.dropped.items() if m in self.expected and m not in answered}
        lost = sorted(self.expected - answered - set(dropped))
        resolve = [self.resolved[m] - self.arrived[m] for m in self.resolved if m in self.expected]
        return {
            "messages": len(self.arrived),
            "expected": len(self.expected),
            "answered": len(answered),
            "dropped": dict(Counter(reason.split(" ")[0] for reason in dropped.values())),
            "lost": len(lost),
            "lost_ids": lost[:10],
            "duplicates": sum(1 for m in self.sent if self.sent[m] > 1),
            "optout_seen": self.replies_to(ANN) == 0,
            "optout_unseen": self.replies_to(CY) == 0,
            "replies_to_opted_out": {ANN: self.replies_to(ANN), CY: self.replies_to(CY)},
            "median_handle_ms": round(statistics.median(self.handle or [0.0]) * 1000, 1),
            "worst_handle_ms": round(max(self.handle, default=0.0) * 1000, 1),
            "worst_resolve_s": round(max(resolve, default=0.0), 2),
        }

    def replies_to(self, user: str) -> int:
        return sum(n for m, n in self.sent.items() if self.author.get(m) == user)


@dataclass
class Recorder(Headless):
    """The platform: takes every reply whole, records which message it answered."""

    tally: Tally
    platform: str = PLATFORM
    text_limit: int = 4000
    count: int = 0

    async def deliver(self, reply: Reply, persona: Persona, snapshots: AsyncIterator[str]) -> Sent:
        try:
            text = await final_text(snapshots)
        except IncompleteReply:
            return Sent(complete=False)
        self.count += 1
        if reply.reply_to:
            self.tally.sent[reply.reply_to] += 1
            self.tally.resolve(reply.reply_to)
        return Sent(message_ids=(f"{id(self)}-{self.count}",), text=text)


def timed(fleet: Fleet, tally: Tally) -> None:
    """Time every decision: wrap the handle `dispatch` calls."""
    inner = fleet.handle

    async def handle(event: Event, now: float | None = None) -> Plan:
        start = time.perf_counter()
        try:
            return await inner(event, now)
        finally:
            tally.handle.append(time.perf_counter() - start)

    fleet.handle = handle  # type: ignore[method-assign]


def process(cfg: FleetConfig, prefix: str, tally: Tally) -> Fleet:
    fleet = build_fleet(cfg, personas(), state=make_state(cfg, redis_prefix=prefix))
    fleet.attach(Recorder(tally))
    fleet.outcomes.append(tally.on_outcome)
    fleet.listeners.append(tally.on_plan)
    timed(fleet, tally)
    return fleet


class Traffic:
    """Messages to both processes, one a few milliseconds after the other, as two receivers get them;
    which one is first alternates (only the first checks the opt-out: the other's dedupe stops it)."""

    def __init__(self, name: str, fleets: list[Fleet], tally: Tally, rate: float) -> None:
        self.name, self.fleets, self.tally, self.rate = name, fleets, tally, rate
        self.n = itertools.count()
        self.tasks: set[asyncio.Task[None]] = set()
        self.big = False

    def message(self, user: str, n: int) -> Message:
        persona = PERSONAS[n % len(PERSONAS)]
        text = f"@{persona} what do you think?"
        if self.big and n % 4 == 0:
            text += " " + "a" * BIG + "!"
        return Message(
            platform=PLATFORM,
            id=f"{self.name}-{n}",
            channel=f"c{n % 6}",
            author=Author(id=user, name=user),
            text=text,
            mentions=frozenset({persona}),
        )

    def send(self, event: Message, n: int) -> None:
        self.tally.arrived[event.id] = time.perf_counter()
        self.tally.author[event.id] = event.author.id
        if event.author.id not in (ANN, CY):
            self.tally.expected.add(event.id)
        order = self.fleets if n % 2 else self.fleets[::-1]
        for i, fleet in enumerate(order):
            task = asyncio.ensure_future(self._later(0.005 * i, fleet.dispatch(event)))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    @staticmethod
    async def _later(delay: float, coro: Awaitable[None]) -> None:
        await asyncio.sleep(delay)
        await coro

    async def run(self, seconds: float, users: tuple[str, ...]) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        for user in itertools.cycle(users):
            if loop.time() >= end:
                return
            n = next(self.n)
            self.send(self.message(user, n), n)
            await asyncio.sleep(1 / self.rate)

    async def settle(self, fleets: list[Fleet], within: float) -> None:
        deadline = asyncio.get_running_loop().time() + within
        while self.tasks and asyncio.get_running_loop().time() < deadline:
            await asyncio.wait(list(self.tasks), timeout=0.5)
        for fleet in fleets:
            left = max(0.1, deadline - asyncio.get_running_loop().time())
            try:
                await asyncio.wait_for(fleet.drain(), left)
            except TimeoutError:
                pass  # what is still pending is reported as lost


@dataclass
class World:
    server: RedisServer
    fake: FakeOpenAI
    traffic: Traffic | None = None


Fault = Callable[[World], Awaitable[None]]


async def nothing(world: World) -> None:
    return None


async def freeze(world: World) -> None:
    world.server.freeze()


async def thaw(world: World) -> None:
    world.server.thaw()


async def flushall(world: World) -> None:
    with redis.Redis(port=world.server.port) as client:
        client.flushall()


async def hang(world: World) -> None:
    world.fake.fallback = Delay(600)


async def storm(world: World) -> None:
    world.fake.fallback = Status.server_error(500)


async def heal(world: World) -> None:
    world.fake.fallback = None


async def big(world: World) -> None:
    assert world.traffic is not None
    world.traffic.big = True


async def small(world: World) -> None:
    assert world.traffic is not None
    world.traffic.big = False


@dataclass(frozen=True)
class Scenario:
    name: str
    start: Fault = nothing
    end: Fault = nothing
    slow: float = 0.0  # seconds each way through a delaying proxy, for the whole run


SCENARIOS = (
    Scenario("baseline"),
    Scenario("frozen-redis", freeze, thaw),
    Scenario("slow-redis", slow=0.06),
    Scenario("redis-flush", flushall),
    Scenario("llm-hang", hang, heal),
    Scenario("llm-500", storm, heal),
    Scenario("1mb-message", big, small),
)


async def opt_out(fleet: Fleet, user: str) -> None:
    author = Author(id=user, name=user)
    await fleet.dispatch(Command(platform=PLATFORM, id=f"optout-{uuid.uuid4().hex}", channel=f"dm-{user}",
                                 author=author, name="optout", is_dm=True))  # fmt: skip
    await fleet.drain()


async def run(scenario: Scenario, world: World, rate: float) -> dict[str, Any]:
    proxy = SlowProxy(world.server.port, scenario.slow) if scenario.slow else None
    if proxy is not None:
        await proxy.start()
    url = proxy.url if proxy is not None else world.server.url
    cfg = config(url, world.fake)
    tally = Tally()
    prefix = f"bench:{scenario.name}:{uuid.uuid4().hex[:6]}:"
    fleets = [process(cfg, prefix, tally) for _ in range(2)]
    world.traffic = traffic = Traffic(scenario.name, fleets, tally, rate)
    try:
        for user in (ANN, CY):
            await opt_out(fleets[0], user)  # on A only: B learns Ann's choice from her messages
        # Ann twice a round, so that each process is first to get one of her messages.
        await traffic.run(PRE, (*PEOPLE, ANN, ANN))
        await scenario.start(world)
        try:
            await traffic.run(FAULT, (*PEOPLE, ANN, CY))
        finally:
            await scenario.end(world)
        await traffic.run(POST, (*PEOPLE, ANN, CY))
        await traffic.settle(fleets, LLM_TIMEOUT + 8)
        return {"scenario": scenario.name, **tally.summary()}
    finally:
        for fleet in fleets:
            await fleet.stop(grace=0)
        if proxy is not None:
            await proxy.close()


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| scenario | handle ms (median / worst) | worst resolve s | answered / expected | dropped (reason) | lost"
        " | duplicates | opt-outs held (seen / unseen) |",
        "|---|---:|---:|---:|---|---:|---:|---|",
    ]
    for r in rows:
        dropped = ", ".join(f"{n} {why}" for why, n in sorted(r["dropped"].items())) or "0"
        held = f"{'yes' if r['optout_seen'] else 'NO'} / {'yes' if r['optout_unseen'] else 'NO'}"
        handle = f"{r['median_handle_ms']} / {r['worst_handle_ms']:,}"
        answered = f"{r['answered']} / {r['expected']}"
        lines.append(
            f"| {r['scenario']} | {handle} | {r['worst_resolve_s']} | {answered} | {dropped} | {r['lost']}"
            f" | {r['duplicates']} | {held} |"
        )
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--only", nargs="*", choices=[s.name for s in SCENARIOS])
    parser.add_argument("--rate", type=float, default=12.0, help="messages per second")
    args = parser.parse_args()
    rows = []
    with RedisServer() as server:
        async with FakeOpenAI() as fake:
            world = World(server, fake)
            for scenario in SCENARIOS:
                if args.only and scenario.name not in args.only:
                    continue
                row = await run(scenario, world, args.rate)
                print(json.dumps(row), flush=True)
                rows.append(row)
    print(table(rows))


if __name__ == "__main__":
    asyncio.run(main())
