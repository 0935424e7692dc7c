"""A message decided in one admission step: everything local first, then one call to shared state.

The trigger hits, the fleet's own rules (self, bot chains), channel rules and quiet need no state, so
they come first; then one `Admission.admit` claims the message, checks the author's opt-out, appends
the turn, reads the mutes and the author's care end (safety desk) and runs every rate limit of every
candidate (on Redis: one script call, shared with concurrent messages). What comes back is turned
into the plan as routing always did.
Commands, feed posts, taken-over messages and messages the safety desk must see between the opt-out
check and the history write (a moderator with I/O, or text the local lists flag) keep the
step-by-step path (Fleet._decide).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from bots.core.claims import DUPLICATE
from bots.core.codec import encode_claim
from bots.core.events import Message
from bots.core.gate import Candidate, Where
from bots.core.images import turn_text
from bots.core.memory.follow_up import follow_up
from bots.core.plan import Decision, Plan
from bots.core.ports import Entry, Turn
from bots.core.route import _candidates, _explain_silence, _feed_of, _feed_thread_reply, _react

if TYPE_CHECKING:
    from bots.core.fleet import Fleet


def turn_of(msg: Message, now: float) -> Turn:
    """The message as a turn of its conversation's history."""
    author = msg.author
    return Turn(
        speaker=author.name,
        text=turn_text(msg),
        at=now,
        user_id="" if author.persona_id else author.id,
        persona_id=author.persona_id,
        message_id=msg.id,
        reply_to=(msg.reply_to_id or "") if author.persona_id else "",
    )


def is_feed_post(fleet: Fleet, msg: Message) -> bool:
    """A post in a feed channel: its followers' comments are planned by bots.core.feed instead."""
    return msg.is_post and msg.author.persona_id is None and _feed_of(fleet, msg) is not None


def one_step(fleet: Fleet, msg: Message) -> bool:
    """Whether this message is decided here, in one admission step."""
    return not is_feed_post(fleet, msg) and not _screened_first(fleet, msg)


def _screened_first(fleet: Fleet, msg: Message) -> bool:
    """The safety desk reads a person's message after their opt-out and before it is remembered: a
    moderator with I/O must never see the words of someone who opted out, and a flagged message is
    not remembered. The local lists run in-process, so a message they pass goes the one-step way."""
    if msg.author.persona_id is not None or msg.author.is_bot or not msg.text:
        return False
    desk = fleet.safety
    moderator = desk.moderator
    if moderator is desk.local:
        return desk.local.check_now(msg.text).flagged
    return moderator is desk.remote


async def decide_message(fleet: Fleet, msg: Message, plan: Plan, now: float) -> Plan:
    author = msg.author
    foreign = author.is_bot and author.persona_id is None and fleet.config.fleet.ignore_foreign_bots
    hits, reactions = fleet.index.match(msg, fleet.rng)
    # What an ignored message records as skipped: the hits as matched (the feed adds none of its own).
    matched = list(hits)
    where = Where.of(msg, None if author.persona_id else author.id)
    local = Plan(event=msg, at=now)
    open_: list[Candidate] = []
    if not foreign:
        conversing = _feed_thread_reply(fleet, msg, _feed_of(fleet, msg), hits)
        screened = fleet.gate.screen(local, where, _candidates(fleet, msg, local, hits, conversing), now, frozenset())
        # Mentions and replies first, then by score; ties broken at random.
        open_ = sorted(screened, key=lambda c: (-c.score, fleet.rng.random()))
    root = msg.root or msg.key
    chain_root = root if author.persona_id else None
    grants = fleet.config.fleet.max_responders
    if chain_root is not None and open_:
        grants = fleet.chains.reserve(chain_root, min(grants, len(open_)), fleet.config.fleet.max_bot_chain)
        if not grants:
            local.decisions.extend(Decision(c.persona.id, "skip", "max_bot_chain") for c in open_)
            open_ = []
    parent = msg.parent_channel
    reserved = grants if chain_root is not None and open_ else 0
    settle = foreign or (not hits and not reactions)
    entry = Entry(
        key=msg.key,
        # Only a claim another process may take over needs the event written out.
        payload=encode_claim(msg) if fleet.keeper.claims.shared and not settle else "",
        owner=fleet.keeper.owner,
        lease=fleet.keeper.lease,
        keep=fleet.config.fleet.dedupe_seconds,
        platform=msg.platform,
        user="" if author.persona_id is not None or author.is_bot else author.id,
        conversation=msg.conversation,
        parent=f"{msg.platform}:{parent}" if parent and parent != msg.channel else "",
        turn=None if foreign else turn_of(msg, now),
        candidates=tuple(c.persona.id for c in open_),
        rates=tuple(
            fleet.gate.rates(c.persona, where.platform, where.conversation, where.user, conversing=c.conversing)
            for c in open_
        ),
        max_grants=grants,
        settle=settle,
        # Without reactions, and with no named persona to explain the silence of, a refusal ends it.
        settle_unless_granted=not reactions
        and (author.persona_id is not None or author.is_bot or all(h.kind != "mention" for h in hits.values())),
        # The safety desk's care read rides along, so a reply to a person costs no call of its own.
        care=fleet.config.safety.care.enabled,
    )
    try:
        got = await fleet.admission.admit(entry, now)
    except Exception:
        if chain_root is not None:
            fleet.chains.release(chain_root, reserved)
        fleet.keeper.abandon(msg.key)
        raise
    plan.settled = got.settled
    if not got.claimed or got.opted_out or foreign:
        if chain_root is not None:
            fleet.chains.release(chain_root, reserved)
        if not got.claimed:
            plan.note = DUPLICATE
            return plan
        why = "opted_out" if got.opted_out else "foreign_bot"
        if got.opted_out:
            # Not even the audit keeps what they wrote: only that the fleet stayed away, and from whom.
            plan.event = dataclasses.replace(msg, text="", images=(), files=())
        plan.note = why
        personas = fleet.index.personas
        plan.decisions.extend(Decision(personas[i].id, "skip", why) for i in matched)
        return fleet._record(plan)
    fleet.gallery.put(msg, now)
    fleet.memory.heard(msg, now)
    plan.decisions.extend(local.decisions)
    granted = fleet.gate.judge(plan, open_, got.verdicts)
    if chain_root is not None:
        fleet.chains.release(chain_root, reserved - len(granted))
    chain = msg.chain + 1 if author.persona_id else 0
    for c, delay in zip(granted, fleet.gate.stagger(len(granted)), strict=True):
        fleet.gate.reply(plan, where, c, delay=delay, reply_to=msg.id, chain=chain, root=root)
    _react(fleet, msg, plan, reactions, where, got.muted)
    _explain_silence(fleet, msg, plan, hits, now)
    await follow_up(fleet, msg, plan, now)
    await fleet.safety.after_route(msg, plan, now, care_until=got.care_until, care_read=entry.care)
    await fleet.gate.finish(plan, now)
    return fleet._record(plan)
