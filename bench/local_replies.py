"""Local model reply quality: how many replies hit max_tokens, their length, seconds per reply.

Runs the shipped SmolLM2 GGUF through the real LocalClient and Brain with the shipped personas'
prompts and settings, on a fixed set of chat messages (one per persona, cycling). Prints one JSON
line per reply and a summary line:
{"replies": n, "hit_max_tokens": k, "mean_chars": x, "mean_tokens": y, "seconds_per_reply": s}
Run: python bench/local_replies.py [--n 10] [--seed 1]
Needs the local extra and the model (README: Quickstart).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bots.config import LLMConfig
from bots.core.brain import Brain, Usage, build_messages
from bots.core.ports import Chunk, LLMRequest, Turn
from bots.llm.local import LocalClient
from bots.persona import load_personas

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = [
    "I'm putting my savings into a friend's startup.",
    "This course guarantees I'll earn 10k a month from home.",
    "I failed my driving test again today.",
    "Is it worth learning Rust in 2025?",
    "My landlord wants to raise the rent by 30 percent.",
    "We adopted a puppy this weekend!",
    "Should I quit my job to travel for a year?",
    "Why is the sky blue?",
    "I can't sleep before exams, any advice?",
    "Everyone is doing it, so crypto is a sure thing.",
    "What do you think about remote work?",
    "My code works but I don't know why.",
]


class Capped(logging.Handler):
    """Counts replies the local client ended at its sentence cap (it logs each at DEBUG)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += "ended after" in record.getMessage()


class Recording:
    """Passes the LocalClient's chunks through and keeps the last finish reason."""

    name = "local"

    def __init__(self, inner: LocalClient) -> None:
        self.inner = inner
        self.finish: str | None = None

    async def stream(self, request: LLMRequest) -> AsyncIterator[Chunk]:
        self.finish = None
        async for chunk in self.inner.stream(request):
            if chunk.finish_reason:
                self.finish = chunk.finish_reason
            yield chunk

    async def close(self) -> None:
        await self.inner.close()


async def run(n: int, seed: int, sampling: dict[str, float]) -> dict[str, float]:
    personas = sorted(load_personas(ROOT / "personas"), key=lambda p: p.id)
    # Older LocalClients (before the sampling fix) take neither a seed nor sampling settings.
    local = LocalClient(n_ctx=2048, seed=seed, sampling=sampling) if _takes_seed() else LocalClient(n_ctx=2048)
    client = Recording(local)
    usage: list[Usage] = []
    brain = Brain(client, LLMConfig(timeout_seconds=300), on_usage=usage.append)
    hit = 0
    capped = Capped()
    logging.getLogger("botfleet.llm").addHandler(capped)
    logging.getLogger("botfleet.llm").setLevel(logging.DEBUG)
    history: list[Turn] = []
    chars: list[int] = []
    seconds: list[float] = []
    for i in range(n):
        persona = personas[i % len(personas)]
        # One console room: every reply joins the history the next persona sees, as in `botfleet run`.
        history.append(Turn(speaker="sam", text=PROMPTS[i % len(PROMPTS)], at=float(i), user_id="u1"))
        request = LLMRequest(
            messages=tuple(build_messages(persona, history[-20:])),
            model="local",
            temperature=persona.model.temperature if persona.model.temperature is not None else 0.8,
            max_tokens=persona.model.max_tokens or 300,
        )
        started = time.perf_counter()
        text = "".join([t async for t in brain.write(persona, request)])
        seconds.append(time.perf_counter() - started)
        hit += client.finish == "length"
        chars.append(len(text))
        history.append(Turn(speaker=persona.name, text=text, at=i + 0.5, persona_id=persona.id))
        line = {"persona": persona.id, "finish": client.finish, "chars": len(text), "text": text}
        print(json.dumps(line), flush=True)
    await brain.close()
    return {
        "replies": n,
        "hit_max_tokens": hit,
        # Ended by the client after max_sentences rather than by the model's end-of-turn token.
        "ended_at_sentence_cap": capped.count,
        "mean_chars": round(sum(chars) / n, 1),
        "mean_tokens": round(sum(u.completion_tokens for u in usage) / n, 1),
        "seconds_per_reply": round(sum(seconds) / n, 2),
    }


def _takes_seed() -> bool:
    return "seed" in LocalClient.__init__.__code__.co_varnames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat-penalty", type=float, help="override the client's repeat penalty")
    args = parser.parse_args()
    sampling = {} if args.repeat_penalty is None else {"repeat_penalty": args.repeat_penalty}
    print(json.dumps(asyncio.run(run(args.n, args.seed, sampling))))


if __name__ == "__main__":
    main()
