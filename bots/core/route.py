"""Routing one message: trigger hits -> fleet rules (self, bot chains) -> the gate -> reactions.

`max_bot_chain` is the number of persona-to-persona replies one human message may lead to, over all
branches: each Reply and each persona message fed back carries the key of that human message (its
root), and ChainBudget reserves from the root's allowance when the replies are decided.

A post in a feed channel goes to feed.plan_post instead; everything else that may be answered is
decided here, without the LLM and with the limiter as the one network call.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import TYPE_CHECKING

from bots.config import FeedConfig
from bots.core.events import Message, Notice, React, Reply
from bots.core.feed import plan_post
from bots.core.gate import Candidate, Where
from bots.core.plan import Decision, Plan
from bots.core.triggers import SCORES, Hit, ReactionHit
from bots.persona import Persona

if TYPE_CHECKING:
    from bots.core.fleet import Fleet


async def route(fleet: Fleet, msg: Message, plan: Plan, now: float) -> None:
    feed = _feed_of(fleet, msg)
    if feed is not None and msg.is_post and msg.author.persona_id is None:
        await plan_post(fleet, msg, plan, now, feed)
        return
    hits, reactions = fleet.index.match(msg, fleet.rng)
    conversing = _feed_thread_reply(fleet, msg, feed, hits)
    if not hits and not reactions:
        return
    where = Where.of(msg, None if msg.author.persona_id else msg.author.id)
    muted = await fleet.gate.muted(where)
    await _replies(fleet, msg, plan, _candidates(fleet, msg, plan, hits, conversing), where, muted, now)
    _react(fleet, msg, plan, reactions, where, muted)
    _explain_silence(fleet, msg, plan, hits, now)


_RETRY = re.compile(r"\(retry in (\d+)s\)")


def silence_text(p: Persona, reason: str) -> str:
    """Why p, addressed by name, stays silent, in words for the person ("" when not worth telling)."""
    if reason == "muted":
        return f"{p.name} is muted in this channel."
    if reason == "channel_denied":
        return f"{p.name} does not speak in this channel."
    if reason.startswith("budget:"):
        return f"{p.name} has used up today's budget here; try again tomorrow."
    if reason.startswith("llm:"):
        return f"{p.name} cannot answer right now (the language model is not responding); try again in a minute."
    if reason.startswith(("per_", "channel_per_minute", "cooldown", "max_responders")):
        retry = _RETRY.search(reason)
        when = f"in {retry.group(1)} s" if retry and retry.group(1) != "0" else "in a minute"
        return f"{p.name} is busy here; try again {when}."
    return ""


def _explain_silence(fleet: Fleet, msg: Message, plan: Plan, hits: dict[int, Hit], now: float) -> None:
    """A person who names a persona that will not answer hears why, not silence: one private notice,
    at most once a minute per person (the limits exist to keep the channel quiet)."""
    if msg.author.persona_id is not None or msg.author.is_bot:
        return
    personas = fleet.index.personas
    named = [personas[h.persona] for h in hits.values() if h.kind == "mention"]
    answering = {a.persona_id for a in plan.actions if isinstance(a, Reply)}
    skipped = {d.persona_id: d.reason for d in plan.decisions if d.action == "skip"}
    lines = [silence_text(p, skipped[p.id]) for p in named if p.id not in answering and p.id in skipped]
    lines = [line for line in lines if line]
    if not lines or not fleet.gate.may_tell(msg.platform, msg.author.id, now):
        return
    plan.actions.append(
        Notice(
            platform=msg.platform,
            channel=msg.channel,
            text=" ".join(lines),
            reply_to=msg.id,
            private=True,
            to_user=msg.author.id,
        )
    )


async def _replies(
    fleet: Fleet,
    msg: Message,
    plan: Plan,
    candidates: list[Candidate],
    where: Where,
    muted: frozenset[str],
    now: float,
) -> None:
    """The candidates through the gate, best first, then a staggered Reply for each one admitted."""
    from_persona = msg.author.persona_id
    screened = fleet.gate.screen(plan, where, candidates, now, muted)
    # Mentions and replies first, then by score; ties broken at random.
    screened.sort(key=lambda c: (-c.score, fleet.rng.random()))
    root = msg.root or msg.key
    granted = await _limit(fleet, plan, where, screened, root if from_persona else None, now)
    chain = msg.chain + 1 if from_persona else 0
    for c, delay in zip(granted, fleet.gate.stagger(len(granted)), strict=True):
        fleet.gate.reply(plan, where, c, delay=delay, reply_to=msg.id, chain=chain, root=root)


class ChainBudget:
    """Persona-to-persona replies already granted per human message (its event key), over every
    branch of the exchange it started: max_bot_chain bounds that count, not one branch's depth."""

    def __init__(self, remember: int = 10_000) -> None:
        self.remember = remember
        self._used: OrderedDict[str, int] = OrderedDict()

    def reserve(self, root: str, want: int, limit: int) -> int:
        """Take up to want of what is left under limit; no await between the look and the take, so
        concurrent branches cannot both take the last one."""
        used = self._used.get(root, 0)
        n = max(0, min(want, limit - used))
        if n:
            self._used[root] = used + n
            self._used.move_to_end(root)
            while len(self._used) > self.remember:
                self._used.popitem(last=False)
        return n

    def release(self, root: str, n: int) -> None:
        """Give back what was reserved but not used (the limiter said no)."""
        if n and root in self._used:
            self._used[root] = max(0, self._used[root] - n)

    def used(self, root: str) -> int:
        return self._used.get(root, 0)


async def _limit(
    fleet: Fleet, plan: Plan, where: Where, screened: list[Candidate], root: str | None, now: float
) -> list[Candidate]:
    """The gate's limits; a reply to a persona must also fit what is left of its root's bot chain."""
    grants = fleet.config.fleet.max_responders
    if root is None:
        return await fleet.gate.limit(plan, where, screened, grants, now)
    reserved = fleet.chains.reserve(root, min(grants, len(screened)), fleet.config.fleet.max_bot_chain)
    if not reserved:
        plan.decisions.extend(Decision(c.persona.id, "skip", "max_bot_chain") for c in screened)
        return []
    granted = await fleet.gate.limit(plan, where, screened, reserved, now)
    fleet.chains.release(root, reserved - len(granted))
    return granted


def _feed_of(fleet: Fleet, msg: Message) -> FeedConfig | None:
    if not fleet.config.feeds.any:
        return None
    return fleet.config.feeds.find(msg.platform, (msg.channel, msg.channel_name, msg.parent_channel or ""))


def _feed_thread_reply(fleet: Fleet, msg: Message, feed: FeedConfig | None, hits: dict[int, Hit]) -> str | None:
    """In a feed, answering a reply to a comment is the conversation the post started: the persona
    answers even without a reply trigger, and its per-channel limit and cooldown do not apply.
    Returns that persona's id (and adds its hit), else None."""
    if feed is None or msg.reply_to_persona is None or msg.author.persona_id is not None:
        return None
    i = fleet.index.by_id.get(msg.reply_to_persona)
    if i is None:
        return None
    if i not in hits or hits[i].score < SCORES["reply"]:
        hits[i] = Hit(i, "reply", "feed")
    return msg.reply_to_persona


def _candidates(
    fleet: Fleet, msg: Message, plan: Plan, hits: dict[int, Hit], conversing: str | None
) -> list[Candidate]:
    """The hit personas the fleet's own rules allow: none answers itself, and persona-to-persona
    exchanges stop at max_bot_chain."""
    personas = fleet.index.personas
    from_persona = msg.author.persona_id
    limit = fleet.config.fleet.max_bot_chain
    chain = msg.chain + 1
    out: list[Candidate] = []
    for hit in hits.values():
        p = personas[hit.persona]
        if p.id == from_persona:
            plan.decisions.append(Decision(p.id, "skip", "self"))
        elif from_persona and chain > limit:
            plan.decisions.append(Decision(p.id, "skip", f"chain_depth:{chain}>{limit}"))
        else:
            out.append(Candidate(p, hit.reason, conversing=p.id == conversing, score=hit.score))
    return out


def _react(
    fleet: Fleet, msg: Message, plan: Plan, reactions: list[ReactionHit], where: Where, muted: frozenset[str]
) -> None:
    """Reactions follow the channel rules and mutes, but neither the reply limits nor bot chains."""
    personas = fleet.index.personas
    for r in reactions:
        p = personas[r.persona]
        reason = "self" if p.id == msg.author.persona_id else fleet.gate.closed(p, where, muted)
        if reason:
            plan.decisions.append(Decision(p.id, "skip", f"react:{reason}"))
            continue
        detail = f"{r.kind}:{r.detail}"
        plan.decisions.append(Decision(p.id, "react", detail))
        plan.actions.append(React(p.id, msg.platform, msg.channel, msg.id, r.emoji, reason=detail))
