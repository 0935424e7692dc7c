"""The one step every would-be reply passes, whoever planned it (routing, commands, feeds).

Channel rules, mutes, quiet (the LLM breaker, token budgets), the rate limits in one limiter call,
then a `Reply` per admitted persona with staggered delays. Routing, commands and feeds each choose
their candidates and order; what may speak, and how a reply is built, is decided only here.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from bots.config import FleetConfig
from bots.core.disclosure import Disclosure
from bots.core.events import Action, Command, Message, Reply
from bots.core.plan import Decision, Plan
from bots.core.ports import Rate, RateLimiter, Store, Verdict
from bots.core.usage import UsageMeter
from bots.persona import Persona


class Resting(Protocol):
    def resting(self) -> bool: ...


class GateHost(Protocol):
    """What the gate reads of the fleet; read on every call, since a reload swaps config and personas."""

    config: FleetConfig
    store: Store
    limiter: RateLimiter
    rng: random.Random
    usage: UsageMeter
    disclosure: Disclosure

    @property
    def personas(self) -> Mapping[str, Persona]: ...

    @property
    def breaker(self) -> Resting: ...


@dataclass(frozen=True, slots=True)
class Where:
    """Where a reply would go, and to whom: a channel (with the names its rules may use) and the
    human being answered (None when a persona is)."""

    platform: str
    channel: str
    channel_name: str = ""
    parent: str | None = None
    user: str | None = None

    @classmethod
    def of(cls, event: Message | Command, user: str | None) -> Where:
        return cls(event.platform, event.channel, event.channel_name, event.parent_channel, user)

    @property
    def names(self) -> tuple[str, ...]:
        return (self.channel, self.channel_name, self.parent or "")

    @property
    def conversation(self) -> str:
        return f"{self.platform}:{self.channel}"


@dataclass(frozen=True, slots=True)
class Candidate:
    persona: Persona
    reason: str
    # Someone answered p's feed comment: only p's overall rate and the channel's cap apply.
    conversing: bool = False
    # How strongly p's trigger fired (mentions first), for callers that order by it.
    score: int = 0


def channel_allowed(persona: Persona, names: Sequence[str]) -> bool:
    allow, deny = persona.channels.allow, persona.channels.deny
    if deny and any(n in deny for n in names if n):
        return False
    return not allow or any(n in allow for n in names if n)


def sponsor_footer(p: Persona) -> str:
    return f"— AI persona for {p.sponsor}" if p.sponsor else ""


# A person who named a persona that cannot answer is told why at most this often.
TELL_EVERY = 60.0
TOLD_REMEMBERED = 10_000


class Gate:
    def __init__(self, host: GateHost) -> None:
        self.host = host
        self._told: OrderedDict[str, float] = OrderedDict()

    def may_tell(self, platform: str, user: str, now: float) -> bool:
        """Whether this person may be told now why a persona they addressed stays silent (and, if so,
        count it): once a minute, so a notice never becomes the spam the limits were keeping out."""
        key = f"{platform}:{user}"
        last = self._told.get(key)
        if last is not None and now - last < TELL_EVERY:
            return False
        self._told[key] = now
        self._told.move_to_end(key)
        while len(self._told) > TOLD_REMEMBERED:
            self._told.popitem(last=False)
        return True

    async def muted(self, where: Where) -> frozenset[str]:
        """Personas muted here; a mute in a channel also covers its threads and topics."""
        store = self.host.store
        muted = await store.muted(where.conversation)
        if where.parent and where.parent != where.channel:
            muted |= await store.muted(f"{where.platform}:{where.parent}")
        return muted

    def closed(self, p: Persona, where: Where, muted: frozenset[str]) -> str:
        """Why p may not speak in this channel at all ("" if it may); reactions obey this too."""
        if not channel_allowed(p, where.names):
            return "channel_denied"
        if p.id in muted:
            return "muted"
        return ""

    def quiet(self, p: Persona, platform: str, user: str | None, now: float) -> str:
        """Why p may not start a reply now, whatever the rate limits say ("" if it may): the LLM
        endpoint is resting after failures, or a daily token budget is spent."""
        if self.host.breaker.resting():
            return "llm:circuit_open"
        return self.host.usage.over_budget(self.host.config, p, platform, user, now)

    def rates(
        self, p: Persona, platform: str, conversation: str, user: str | None, *, conversing: bool = False
    ) -> list[Rate]:
        """Every limit a reply by p in this conversation must fit."""
        lim = p.limits
        out = [Rate(f"chan:{conversation}", self.host.config.fleet.channel_per_minute, 60.0, "channel_per_minute")]
        if lim.per_minute:
            out.append(Rate(f"p:{p.id}", lim.per_minute, 60.0, "per_minute"))
        if conversing:
            return out
        if lim.per_channel_per_minute:
            out.append(Rate(f"pc:{p.id}:{conversation}", lim.per_channel_per_minute, 60.0, "per_channel_per_minute"))
        if lim.per_user_per_minute and user:
            out.append(Rate(f"pu:{p.id}:{platform}:{user}", lim.per_user_per_minute, 60.0, "per_user_per_minute"))
        if lim.cooldown_seconds:
            out.append(Rate(f"cd:{p.id}:{conversation}", 1, lim.cooldown_seconds, "cooldown"))
        return out

    async def admit(
        self,
        plan: Plan,
        where: Where,
        candidates: Sequence[Candidate],
        max_grants: int,
        now: float,
        *,
        muted: frozenset[str] | None = None,
    ) -> list[Candidate]:
        """The candidates, in the order given, that may reply now: at most max_grants. Every other
        one gets a skip decision with its reason."""
        if muted is None:
            muted = await self.muted(where)
        return await self.limit(plan, where, self.screen(plan, where, candidates, now, muted), max_grants, now)

    def screen(
        self, plan: Plan, where: Where, candidates: Sequence[Candidate], now: float, muted: frozenset[str]
    ) -> list[Candidate]:
        """The candidates that may speak here now, before any limit: channel rules, mutes, quiet.
        These come before the limiter so a persona that may not speak anyway takes no slot."""
        open_: list[Candidate] = []
        for c in candidates:
            reason = self.closed(c.persona, where, muted) or self.quiet(c.persona, where.platform, where.user, now)
            if reason:
                plan.decisions.append(Decision(c.persona.id, "skip", reason))
            else:
                open_.append(c)
        return open_

    async def limit(
        self, plan: Plan, where: Where, candidates: Sequence[Candidate], max_grants: int, now: float
    ) -> list[Candidate]:
        """The candidates, in order, that fit every rate limit (one limiter call), at most max_grants."""
        if not candidates or max_grants <= 0:
            return []
        rates = [
            self.rates(c.persona, where.platform, where.conversation, where.user, conversing=c.conversing)
            for c in candidates
        ]
        verdicts = await self.host.limiter.acquire(rates, max_grants, now)
        return self.judge(plan, candidates, verdicts)

    def judge(self, plan: Plan, candidates: Sequence[Candidate], verdicts: Sequence[Verdict]) -> list[Candidate]:
        """The candidates the limiter admitted; every other one gets a skip decision with its reason."""
        granted: list[Candidate] = []
        for c, verdict in zip(candidates, verdicts, strict=True):
            if verdict.allowed:
                # Its reply decision, in candidate order; `reply` gives it its final reason.
                plan.decisions.append(Decision(c.persona.id, "reply", c.reason))
                granted.append(c)
                continue
            retry = f" (retry in {verdict.retry_after:.0f}s)" if verdict.retry_after else ""
            plan.decisions.append(Decision(c.persona.id, "skip", f"{verdict.blocked_by}{retry}"))
        return granted

    def stagger(self, n: int) -> list[float]:
        """Delays for n replies in a row, each a random reply delay after the one before."""
        lo, hi = self.host.config.fleet.reply_delay_seconds
        out: list[float] = []
        delay = 0.0
        for _ in range(n):
            delay += self.host.rng.uniform(lo, hi) if hi > 0 else 0.0
            out.append(delay)
        return out

    def reply(
        self,
        plan: Plan,
        where: Where,
        c: Candidate,
        *,
        delay: float,
        reply_to: str | None,
        reason: str = "",
        chain: int = 0,
        root: str = "",
        instruction: str = "",
        queue: str = "",
    ) -> Reply:
        """Plan one reply: its decision and its action."""
        reason = reason or c.reason
        action = Reply(
            persona_id=c.persona.id,
            platform=where.platform,
            channel=where.channel,
            reply_to=reply_to,
            reason=reason,
            delay=delay,
            chain=chain,
            to_user=where.user,
            instruction=instruction,
            footer=sponsor_footer(c.persona),
            queue=queue,
            root=root,
        )
        decision = Decision(c.persona.id, "reply", reason)
        granted = Decision(c.persona.id, "reply", c.reason)
        if granted in plan.decisions:
            plan.decisions[plan.decisions.index(granted)] = decision
        else:
            plan.decisions.append(decision)
        plan.actions.append(action)
        return action

    async def finish(self, plan: Plan, now: float) -> None:
        """The last look at a plan's replies, whoever planned them: a budget or the breaker may still
        silence one (a command may have spent it), and a first contact gets its AI disclosure."""
        if not any(isinstance(a, Reply) for a in plan.actions):
            return
        kept: list[Action] = []
        for action in plan.actions:
            if isinstance(action, Reply):
                last = await self._last_look(plan, action, now)
                if last is None:
                    continue
                action = last
            kept.append(action)
        plan.actions = kept

    async def _last_look(self, plan: Plan, reply: Reply, now: float) -> Reply | None:
        host = self.host
        p = host.personas.get(reply.persona_id)
        reason = self.quiet(p, reply.platform, reply.to_user, now) if p else ""
        if reason:
            silenced = Decision(reply.persona_id, "skip", reason)
            plan.decisions = [
                silenced if d.persona_id == reply.persona_id and d.action == "reply" else d for d in plan.decisions
            ]
            return None
        footer = await host.disclosure.footer(host.store, host.config.about.disclosure, reply, now)
        return reply if footer == reply.footer else replace(reply, footer=footer)
