"""Relationship memory's token cost: a simulated community with and without memory.

N people talk to the shipped personas (personas/) for D virtual days through the real Fleet, gate,
limits, delivery, prompts and memory scheduler; only the model is a stand-in whose token counts are
characters / 4 (the usual estimate), with replies of ~250 characters and summaries that grow one note
per update up to the configured bound. The same seed runs once with memory off and once on; the
difference is what memory costs. Prints one JSON line:
{"people": N, "days": D, "replies_per_day_off": r0, "replies_per_day": r,
 "tokens_per_day_off": a, "tokens_per_day_on": b,
 "extra_tokens_per_day": b - a, "extra_percent": p, "updates_per_day": u, "update_tokens_per_day": t,
 "note_tokens_in_replies_per_day": n}
Run: python bench/memory_tokens.py [--people 100] [--days 7] [--sessions 1] [--messages 3] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
from collections.abc import AsyncIterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bots.config import FleetConfig
from bots.core.brain import Brain, IncompleteReply
from bots.core.events import Author, Message, Reply, Sent
from bots.core.fleet import Fleet
from bots.core.memory.summarise import MARKER
from bots.core.ports import Chunk, LLMRequest
from bots.persona import Persona, load_personas
from bots.state.memory import MemoryRateLimiter, MemoryStore
from tests.headless import Headless, final_text

DAY = 86400.0
REPLY = "That is a real question, and I would start with what you can afford to lose. " * 3
NOTE = "Weighing a change of job against the savings they have; worried about rent"


class TokenClient:
    """Answers with fixed lengths and reports usage as characters / 4; summaries grow by one note."""

    name = "bench"

    def __init__(self) -> None:
        self.update_tokens = 0
        self.updates = 0

    async def stream(self, request: LLMRequest) -> AsyncIterator[Chunk]:
        prompt = sum(len(m["content"]) for m in request.messages) // 4 + 1
        if request.messages[0]["content"].startswith(MARKER):
            held = request.messages[1]["content"].partition("New conversation:")[0].count("\n- ")
            text = "\n".join(f"- [open] {NOTE} ({i})" for i in range(min(held + 1, 10)))
            self.updates += 1
            self.update_tokens += prompt + len(text) // 4 + 1
        else:
            text = REPLY
        yield Chunk(text=text, finish_reason="stop", prompt_tokens=prompt, completion_tokens=len(text) // 4 + 1)

    async def close(self) -> None:
        return None


class Sink(Headless):
    platform = "bench"
    text_limit = 4000

    def __init__(self) -> None:
        self.n = 0
        self.memory_chars = 0

    async def deliver(self, reply: Reply, persona: Persona, snapshots: AsyncIterator[str]) -> Sent:
        try:
            text = await final_text(snapshots)
        except IncompleteReply:
            return Sent(complete=False)
        self.n += 1
        return Sent(message_ids=(f"r{self.n}",), text=text)


PERSONAS = Path(__file__).resolve().parent.parent / "personas"


async def run(people: int, days: int, sessions: int, messages: int, seed: int, memory: bool) -> dict[str, float]:
    personas = load_personas(PERSONAS)
    cfg = FleetConfig.model_validate({"fleet": {"reply_delay_seconds": [0, 0]}, "memory": {"enabled": memory}})
    now = [1_800_000_000.0]
    client = TokenClient()
    fleet = Fleet(
        cfg,
        personas,
        store=MemoryStore(history_size=cfg.fleet.history_size),
        limiter=MemoryRateLimiter(),
        brain=Brain(client, cfg.llm),
        clock=lambda: now[0],
        rng=random.Random(seed),
    )
    sink = Sink()
    fleet.attach(sink)
    memory_chars = [0]
    original = fleet.memory.for_prompt

    async def counted(p: Persona, reply: Reply) -> str:
        text = await original(p, reply)
        memory_chars[0] += len(text)
        return text

    fleet.memory.for_prompt = counted  # type: ignore[method-assign]
    tokens = [0]
    fleet.usage.listeners.append(lambda u: tokens.__setitem__(0, tokens[0] + u.prompt_tokens + u.completion_tokens))
    rng = random.Random(seed)
    names = [p.id for p in personas if p.has("mention")]
    # Each person has two personas they talk to most, in one of five channels.
    habits = {u: (rng.sample(names, 2), f"c{rng.randrange(5)}") for u in range(people)}
    # People talk in sessions: a few messages a minute or two apart, once or twice on the days they come.
    events: list[tuple[float, int]] = []
    for day in range(days):
        for u in range(people):
            for _ in range(rng.randint(0, 2 * sessions)):
                at = now[0] + day * DAY + rng.uniform(8, 23) * 3600
                for _ in range(rng.randint(1, 2 * messages - 1)):
                    events.append((at, u))
                    at += rng.uniform(30, 180)
    events.sort()
    replies = 0
    for i, (at, u) in enumerate(events):
        while now[0] + 60 < at:  # the scheduler's rounds, on virtual time
            now[0] += 60
            await fleet.memory.tick(now[0])
        now[0] = at
        chosen, channel = habits[u]
        pid = rng.choice(chosen)
        author = Author(id=f"u{u}", name=f"person{u}")
        text = f"@{pid} I keep going back and forth about my job and money, what would you do?"
        before = sink.n
        await fleet.dispatch(Message("bench", f"m{i}", channel, author, text, frozenset({pid}), channel_name=channel))
        await fleet.drain()
        replies += sink.n - before
    now[0] += cfg.memory.quiet_seconds + 1
    await fleet.memory.tick(now[0])
    return {
        "tokens": tokens[0],
        "replies": replies,
        "updates": client.updates,
        "update_tokens": client.update_tokens,
        "note_tokens": memory_chars[0] / 4,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--people", type=int, default=100)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--sessions", type=int, default=1, help="mean conversations per person per day")
    ap.add_argument("--messages", type=int, default=3, help="mean messages per conversation")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    off = asyncio.run(run(a.people, a.days, a.sessions, a.messages, a.seed, False))
    on = asyncio.run(run(a.people, a.days, a.sessions, a.messages, a.seed, True))
    d = a.days
    print(
        json.dumps(
            {
                "people": a.people,
                "days": d,
                "replies_per_day_off": round(off["replies"] / d),
                # More replies with memory on: the follow-ups on open dilemmas (memory.follow_up_chance).
                "replies_per_day": round(on["replies"] / d),
                "tokens_per_day_off": round(off["tokens"] / d),
                "tokens_per_day_on": round(on["tokens"] / d),
                "extra_tokens_per_day": round((on["tokens"] - off["tokens"]) / d),
                "extra_percent": round(100 * (on["tokens"] - off["tokens"]) / max(off["tokens"], 1), 1),
                "updates_per_day": round(on["updates"] / d, 1),
                "update_tokens_per_day": round(on["update_tokens"] / d),
                "note_tokens_in_replies_per_day": round(on["note_tokens"] / d),
            }
        )
    )


if __name__ == "__main__":
    main()
