"""`botfleet simulate`: replay a JSONL transcript through the real routing, limits and history,
on virtual time, without the LLM and without sleeping."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from typing import Any

from bots.config import FleetConfig
from bots.core.brain import Brain
from bots.core.events import Author, Command, Message, React, Reply
from bots.core.fleet import Fleet
from bots.core.plan import Plan
from bots.core.text import at_names
from bots.llm.canned import CannedClient
from bots.persona import Persona
from bots.state.memory import MemoryRateLimiter, MemoryStore

PLATFORM = "sim"


def _event(i: int, row: dict[str, Any], fleet: Fleet, last_by: dict[tuple[str, str], str]) -> Message | Command:
    for key in ("at", "channel", "author", "text"):
        if key not in row:
            raise ValueError(f"transcript line {i + 1}: missing {key!r}")
    channel = str(row["channel"])
    author = Author(id=str(row["author"]), name=str(row["author"]), is_bot=bool(row.get("bot", False)), is_admin=True)
    text = str(row["text"])
    if text.startswith("/"):
        name, _, args = text[1:].partition(" ")
        return Command(PLATFORM, str(i), channel, author, name.lower(), args.strip(), is_dm=bool(row.get("dm")))
    reply_to = row.get("reply_to")
    reply_id = last_by.get((channel, str(reply_to))) if reply_to else None
    return Message(
        platform=PLATFORM,
        id=str(i),
        channel=channel,
        author=author,
        text=text,
        mentions=frozenset(n for n in at_names(text) if n in fleet.personas),
        reply_to_persona=str(reply_to) if reply_to else None,
        reply_to_id=reply_id,
        is_dm=bool(row.get("dm", False)),
        channel_name=channel,
        is_post=bool(row.get("post", False)),
    )


async def simulate(
    cfg: FleetConfig, personas: Sequence[Persona], lines: Sequence[str], *, seed: int = 0, show_all: bool = False
) -> list[dict[str, Any]]:
    canned = CannedClient()
    fleet = Fleet(
        cfg,
        personas,
        store=MemoryStore(history_size=cfg.fleet.history_size),
        limiter=MemoryRateLimiter(),
        brain=Brain(canned, cfg.llm),
        rng=random.Random(seed),
    )
    out: list[dict[str, Any]] = []
    last_by: dict[tuple[str, str], str] = {}
    replies = 0

    def emit(i: int, plan: Plan, after: Reply | None = None) -> list[Reply]:
        for d in plan.decisions:
            if d.action == "skip" and not show_all:
                continue
            rec: dict[str, Any] = {"i": i}
            if after is not None:
                # A persona answering a persona: which reply it answers, and how deep in the chain.
                rec.update(followup=after.chain + 1, after=after.persona_id)
            rec.update(persona=d.persona_id, action=d.action)
            if d.action == "react":
                emoji = next(
                    (a.emoji for a in plan.actions if isinstance(a, React) and a.persona_id == d.persona_id), ""
                )
                rec["emoji"] = emoji
            rec["reason"] = d.reason
            out.append(rec)
        return [a for a in plan.actions if isinstance(a, Reply)]

    async def remember(i: int, now: float) -> None:
        # Memory updates due by now, on virtual time, with the canned summariser.
        for r in await fleet.memory.tick(now):
            rec: dict[str, Any] = {"i": i, "persona": r.persona_id, "action": "remember", "reason": r.outcome}
            out.append(rec | {"person": r.person, "notes": list(r.texts)} if r.outcome == "written" else rec)

    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"transcript line {i + 1}: invalid JSON: {exc.msg}") from None
        now = float(row.get("at", 0))
        await remember(i, now)
        event = _event(i, row, fleet, last_by)
        pending = emit(i, await fleet.handle(event, now=now))
        # Simulated replies are "sent" at once: they count, join the history and may trigger others.
        while pending:
            reply = pending.pop(0)
            persona = fleet.personas[reply.persona_id]
            replies += 1
            fleet.memory.replied(reply, now)
            mid = f"sim-r{replies}"
            last_by[(reply.channel, persona.id)] = mid
            echo = Message(
                platform=PLATFORM,
                id=mid,
                channel=reply.channel,
                author=Author(id=f"persona:{persona.id}", name=persona.name, is_bot=True, persona_id=persona.id),
                text=canned.text,
                reply_to_id=reply.reply_to,
                chain=reply.chain,
                root=reply.root,
                channel_name=reply.channel,
            )
            pending.extend(emit(i, await fleet.handle(echo, now=now), after=reply))
    return out
