"""Routing benchmark: one-pass TriggerIndex against a naive loop over personas and their regexes.

For N synthetic personas with 5 triggers each (mention, keywords, regex, reply, free-will chance)
it prints one JSON line per size:
{"personas": N, "msgs_per_s": x, "us_per_msg": y, "naive_msgs_per_s": z, "speedup": x/z}
then one line for a hostile 1 MB message routed at --big-personas personas (RE2 keeps it linear):
{"big_message_bytes": 1000000, "personas": 1000, "ms": t, "target_ms": 50}
Run: python bench/route.py [--sizes 10,100,1000,10000] [--seconds 1.0] [--big-personas 1000]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bots.core.events import Author, Message
from bots.core.triggers import TriggerIndex
from bots.persona import Persona

VOCAB_SIZE = 20_000
FILLER = [
    "the",
    "a",
    "i",
    "you",
    "we",
    "should",
    "think",
    "about",
    "my",
    "job",
    "friend",
    "money",
    "today",
    "really",
    "maybe",
    "not",
    "sure",
    "if",
    "what",
    "would",
    "do",
    "this",
    "week",
    "plan",
    "idea",
    "help",
]


def word(n: int) -> str:
    # Pronounceable distinct tokens, so keywords never collide with filler words.
    letters = "bcdfghjklmnpqrstvwxz"
    vowels = "aeiou"
    out = ""
    n += 1
    while n:
        n, r = divmod(n, 100)
        out += letters[r % 20] + vowels[r // 20]
    return out + "x"


def personas(n: int, rng: random.Random) -> list[Persona]:
    out = []
    for i in range(n):
        kws = [word(rng.randrange(VOCAB_SIZE)) for _ in range(3)]
        rx = rf"(?i)\b{word(rng.randrange(VOCAB_SIZE))}\s+\d+\b"
        out.append(
            Persona.model_validate(
                {
                    "id": f"p{i}",
                    "name": f"Persona {word(VOCAB_SIZE + i)}",
                    "prompt": "x",
                    "triggers": [
                        {"mention": True},
                        {"keywords": kws, "chance": 0.5},
                        {"regex": rx, "chance": 0.5},
                        {"reply": True},
                        {"chance": 0.001},
                    ],
                }
            )
        )
    return out


def messages(count: int, rng: random.Random) -> list[Message]:
    author = Author(id="u1", name="user")
    out = []
    for i in range(count):
        words = [rng.choice(FILLER) for _ in range(rng.randint(8, 20))]
        # About one message in four carries a vocabulary word that some persona may be listening for.
        if rng.random() < 0.25:
            words.insert(rng.randrange(len(words)), word(rng.randrange(VOCAB_SIZE)))
        if rng.random() < 0.05:
            words.insert(rng.randrange(len(words)), f"{word(rng.randrange(VOCAB_SIZE))} {rng.randint(1, 99)}")
        out.append(Message(platform="bench", id=str(i), channel="c", author=author, text=" ".join(words)))
    return out


class Naive:
    """What a simple bot does: every persona, every trigger, per message."""

    def __init__(self, ps: list[Persona]):
        self.items = []
        for p in ps:
            names = re.compile(rf"(?i)\b({re.escape(p.id)}|{re.escape(p.name)})\b")
            kws = [re.compile(rf"(?i)\b{re.escape(k)}\b") for t in p.triggers if t.keywords for k in t.keywords]
            rxs = [re.compile(t.regex) for t in p.triggers if t.regex]
            chance = [t.probability for t in p.triggers if t.kind == "chance"]
            self.items.append((p.id, names, kws, rxs, chance))

    def match(self, msg: Message, rng: random.Random) -> list[str]:
        out = []
        text = msg.text
        for pid, names, kws, rxs, chance in self.items:
            if names.search(text) or any(k.search(text) for k in kws) or any(r.search(text) for r in rxs):
                out.append(pid)
            elif any(rng.random() < c for c in chance):
                out.append(pid)
        return out


def rate(fn, msgs: list[Message], seconds: float) -> float:
    n = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for m in msgs:
            fn(m)
        n += len(msgs)
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - start)


def big_message(size: int, rng: random.Random) -> Message:
    """About `size` characters of chat with keywords, a regex hit and a run that makes (a+)+$ backtrack."""
    words: list[str] = []
    length = 0
    while length < size:
        w = rng.choice(FILLER) if rng.random() < 0.999 else word(rng.randrange(VOCAB_SIZE))
        words.append(w)
        length += len(w) + 1
    text = (" ".join(words) + " " + "a" * 36 + "!")[-size:]
    return Message(platform="bench", id="big", channel="c", author=Author(id="u1", name="user"), text=text)


def route_big(n: int, size: int, repeats: int = 5) -> dict[str, float | int]:
    rng = random.Random(n)
    ps = personas(n, rng)
    # One persona with a catastrophic-backtracking trigger (no literal anchor: it runs on every message).
    ps.append(Persona.model_validate({"id": "evil", "name": "Evil", "prompt": "x", "triggers": [{"regex": "(a+)+$"}]}))
    index = TriggerIndex(ps)
    msg = big_message(size, rng)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        index.match(msg, random.Random(1))
        best = min(best, time.perf_counter() - start)
    return {"big_message_bytes": len(msg.text.encode()), "personas": n, "ms": round(best * 1e3, 1), "target_ms": 50}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10,100,1000,10000")
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--big-personas", type=int, default=1000, help="0: skip the 1 MB message case")
    args = ap.parse_args()
    for n in (int(s) for s in args.sizes.split(",")):
        rng = random.Random(n)
        ps = personas(n, rng)
        msgs = messages(2000, rng)
        index = TriggerIndex(ps)
        naive = Naive(ps)
        r1, r2 = random.Random(1), random.Random(1)
        fast = rate(lambda m, index=index, r1=r1: index.match(m, r1), msgs, args.seconds)
        # The naive loop is slow at large sizes; a smaller sample measures it just as well.
        slow = rate(
            lambda m, naive=naive, r2=r2: naive.match(m, r2), msgs[: max(20, 2000 * 10 // max(n, 10))], args.seconds
        )
        print(
            json.dumps(
                {
                    "personas": n,
                    "msgs_per_s": round(fast),
                    "us_per_msg": round(1e6 / fast, 2),
                    "naive_msgs_per_s": round(slow),
                    "speedup": round(fast / slow, 1),
                }
            ),
            flush=True,
        )
    if args.big_personas:
        print(json.dumps(route_big(args.big_personas, 1_000_000)), flush=True)


if __name__ == "__main__":
    main()
