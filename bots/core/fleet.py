"""The Fleet: the pipeline (dedupe -> opt-outs -> commands or routing -> the gate's last look ->
audit) and the lifecycle (start, drain, stop).

`handle()` decides (no LLM, no sleeping; the limiter is its one possible network call) and
`dispatch()` also carries the decisions out (bots.core.delivery). Adapters feed `dispatch`; tests
and `botfleet simulate` can drive `handle` directly with a virtual clock. Routing is in
bots.core.route, the checks every reply passes in bots.core.gate.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any

from bots.config import FleetConfig
from bots.core.admission import PortAdmission, shared_admission
from bots.core.brain import Brain
from bots.core.claims import DUPLICATE, ClaimKeeper, StoreDedupe
from bots.core.commands import OPTED_OUT_COMMANDS, run_command
from bots.core.delivery import Delivery
from bots.core.disclosure import Disclosure
from bots.core.events import Action, Command, Event, Message, Reply
from bots.core.gallery import MAX_AGE, Gallery
from bots.core.gate import Gate
from bots.core.images import without_bytes
from bots.core.intake import decide_message, one_step, turn_of
from bots.core.memory.follow_up import follow_up
from bots.core.memory.remember import Memory
from bots.core.plan import Decision, Plan
from bots.core.ports import Adapter, Admission, Claims, Pacer, RateLimiter, Store
from bots.core.route import ChainBudget, route
from bots.core.safety.desk import SafetyDesk
from bots.core.safety.moderator import Moderator
from bots.core.text import with_valid_text
from bots.core.triggers import TriggerIndex
from bots.core.usage import UsageMeter
from bots.llm.breaker import Breaker
from bots.persona import Persona
from bots.state.pacing import MemoryPacer

log = logging.getLogger("botfleet.fleet")


class Fleet:
    def __init__(
        self,
        config: FleetConfig,
        personas: Sequence[Persona],
        *,
        store: Store,
        limiter: RateLimiter,
        brain: Brain,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        pacer: Pacer | None = None,
        claims: Claims | None = None,
        moderator: Moderator | None = None,
        admission: Admission | None = None,
    ) -> None:
        self.config = config
        self.pacer: Pacer = pacer or MemoryPacer()  # adapters book sends here (shared through Redis)
        self.store = store
        self.limiter = limiter
        self.brain = brain
        self.clock = clock
        self.rng = rng or random.Random()
        self.sleep = sleep
        self.adapters: dict[str, Adapter] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._accepting = True
        self.audit: OrderedDict[str, Plan] = OrderedDict()
        self.audit_size = 2000
        self.listeners: list[Callable[[Plan], None]] = []
        # What became of each carried-out action: sent, reacted, notified, dropped:<llm error kind>,
        # cut_off, muted, gone (persona unloaded), failed (adapter error) or cancelled (shutdown).
        self.outcomes: list[Callable[[str, Action], None]] = []
        self.usage = UsageMeter(clock)
        if brain.on_usage is not None:
            self.usage.listeners.append(brain.on_usage)
        brain.on_usage = self.usage.record
        self.disclosure = Disclosure()
        self.gate = Gate(self)
        self.safety = SafetyDesk(self, moderator)
        self.chains = ChainBudget()
        self.delivery = Delivery(self)
        self.memory = Memory(self)  # relationship memory: notes written after conversations go quiet
        # Photos of recent messages until their replies are written (history keeps placeholders).
        self.gallery = Gallery(max_age=min(MAX_AGE, config.retention_days * 86400.0))
        # Without claims of its own (a store nobody shares) a claim is the store's dedupe.
        self.keeper = ClaimKeeper(self, claims or StoreDedupe(store))
        # A message's claim, opt-out, history, mutes and limits in one step (one Redis call at most).
        self.admission: Admission = (
            admission
            or shared_admission(store, self.keeper.claims, limiter)
            or PortAdmission(self.keeper.claims, store, limiter)
        )
        self.load(personas)

    # --- personas ---------------------------------------------------------------------------------

    def load(self, personas: Sequence[Persona]) -> None:
        """Swap in a persona set; the index is rebuilt once, off the per-message path."""
        self._personas = {p.id: p for p in personas}
        self.index = TriggerIndex(list(self._personas.values()), free_will_cap=self.config.fleet.max_responders)

    @property
    def personas(self) -> Mapping[str, Persona]:
        return self._personas

    def find_persona(self, name: str) -> Persona | None:
        key = name.strip().lstrip("@").lower()
        if key in self._personas:
            return self._personas[key]
        for p in self._personas.values():
            full = p.name.lower()
            if key in (full, full.removeprefix("the "), full.replace(" ", ""), full.replace(" ", "_")):
                return p
        return None

    # --- lifecycle --------------------------------------------------------------------------------

    def attach(self, adapter: Adapter) -> None:
        self.adapters[adapter.platform] = adapter

    async def start(self, *, connect: bool = True) -> None:
        """Start every adapter; with connect, also start receiving on every account (no leasing)."""
        for adapter in self.adapters.values():
            await adapter.start(self)
        self.keeper.start()
        if connect:
            for adapter in self.adapters.values():
                for account in adapter.accounts():
                    try:
                        await adapter.connect(account)
                    except Exception:
                        # One account the platform refuses must not keep the rest of the fleet down.
                        log.exception("%s: connecting failed; the rest of the fleet runs on", account)

    async def drain(self) -> None:
        """Wait until no reply is pending (replies can trigger more replies, so loop)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def stop(self, grace: float | None = None) -> None:
        """Stop taking events, give replies in flight `grace` seconds, cancel the rest, close all."""
        self._accepting = False
        grace = self.config.fleet.shutdown_seconds if grace is None else grace
        if self._tasks:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + grace
            # asyncio.wait rather than wait_for(gather): a timed-out gather cancels the replies bluntly.
            while self._tasks and (left := deadline - loop.time()) > 0:
                await asyncio.wait(list(self._tasks), timeout=left)
            if self._tasks:
                await self.delivery.cut(list(self._tasks))
        await self.keeper.close()
        await self.memory.close()
        for adapter in list(self.adapters.values()):
            try:
                await adapter.stop()
            except Exception:
                log.exception("stopping %s adapter failed", adapter.platform)
        await self.brain.close()
        close = getattr(self.safety.remote, "close", None)
        if close is not None:
            await close()
        await self.admission.close()
        await self.limiter.close()
        await self.store.close()

    # --- the pipeline -----------------------------------------------------------------------------

    async def dispatch(self, event: Event) -> None:
        """The adapters' sink: decide, then carry the decisions out in the background."""
        event = with_valid_text(event)  # the one place outside text enters the core: no bad Unicode past it
        if not self._accepting:
            return
        try:
            plan = await self.handle(event)
        except Exception:
            log.exception("handling %s failed", event.key)
            return
        self.execute(plan)

    @property
    def accepting(self) -> bool:
        return self._accepting

    def execute(self, plan: Plan) -> None:
        self.keeper.opened(plan)
        for action in plan.actions:
            self._spawn(self._perform(plan.event.key, action))

    async def _perform(self, key: str, action: Action) -> None:
        outcome = "cancelled"
        try:
            outcome = await self.delivery.perform(action)
        finally:
            # The event's claim is done once every action of its plan has an outcome.
            self.keeper.settled(key, action, outcome)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def handle(self, event: Event, now: float | None = None) -> Plan:
        now = self.clock() if now is None else now
        plan = Plan(event=event, at=now)
        if isinstance(event, Message) and one_step(self, event):
            return await decide_message(self, event, plan, now)
        if not await self.keeper.claim(event, now):
            plan.note = DUPLICATE
            return plan
        try:
            return await self._decide(plan, now)
        except Exception:
            self.keeper.abandon(event.key)
            raise

    async def resume(self, event: Event, actions: Sequence[Action] | None) -> None:
        """Finish answering an event whose claim this process took over from one that died: carry out
        the actions it had decided, or decide afresh if it died first (its turn is in history already)."""
        now = self.clock()
        plan = Plan(event=event, at=now, note="taken over")
        if actions is None:
            plan = await self._decide(plan, now, remember=False)
        else:
            # The message has waited a lease time already: no reply waits out its pause again.
            plan.actions.extend(dataclasses.replace(a, delay=0.0) if isinstance(a, Reply) else a for a in actions)
            self._record(plan)
        self.execute(plan)

    async def _decide(self, plan: Plan, now: float, *, remember: bool = True) -> Plan:
        event = plan.event
        if await self._opted_out(event):
            # Not even the audit keeps what they wrote: only that the fleet stayed away, and from whom.
            if isinstance(event, Message):
                plan.event = dataclasses.replace(event, text="", images=(), files=())
            return self._record(self._ignored(plan, "opted_out", event))
        if await self.safety.screen(event, plan, now):
            pass  # care or a flagged message: neither remembered nor answered (bots/core/safety)
        elif isinstance(event, Command):
            await run_command(self, event, plan, now)
            await self.safety.after_route(event, plan, now)
        elif event.author.is_bot and event.author.persona_id is None and self.config.fleet.ignore_foreign_bots:
            return self._record(self._ignored(plan, "foreign_bot", event))
        else:
            if remember:
                await self._remember(event, now)
            self.memory.heard(event, now)
            await route(self, event, plan, now)
            await follow_up(self, event, plan, now)
            await self.safety.after_route(event, plan, now)
        await self.gate.finish(plan, now)
        return self._record(plan)

    async def _opted_out(self, event: Event) -> bool:
        author = event.author
        if author.persona_id is not None or author.is_bot:
            return False
        if isinstance(event, Command) and event.name in OPTED_OUT_COMMANDS:
            return False
        return await self.store.is_opted_out(event.platform, author.id)

    async def _remember(self, msg: Message, now: float) -> None:
        await self.store.append(msg.conversation, turn_of(msg, now))
        self.gallery.put(msg, now)

    @property
    def breaker(self) -> Breaker:
        return self.brain.breaker

    @property
    def replying(self) -> int:
        """Replies being written right now."""
        return self.delivery.replying

    def _ignored(self, plan: Plan, why: str, event: Event) -> Plan:
        """A message the fleet will not answer at all: the personas whose triggers matched it are
        recorded as skipped with the reason, so `why` and `simulate --all` can show it."""
        plan.note = why
        if isinstance(event, Message):
            hits, _ = self.index.match(event, self.rng)
            personas = self.index.personas
            plan.decisions.extend(Decision(personas[i].id, "skip", why) for i in hits)
        return plan

    def _record(self, plan: Plan) -> Plan:
        plan.event = without_bytes(plan.event)  # the audit keeps what happened, not uploaded photos
        self.audit[plan.event.key] = plan
        if len(self.audit) > self.audit_size:
            self.audit.popitem(last=False)
        for listener in self.listeners:
            listener(plan)
        return plan

    def persona_of(self, platform: str, message_id: str) -> str | None:
        """The persona that wrote a platform message, if the fleet sent it."""
        return self.delivery.persona_of(platform, message_id)
