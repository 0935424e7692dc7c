"""The Fleet: dedupe -> route -> policy -> limits -> plan, then write and deliver replies.

`handle()` decides (no LLM, no sleeping; the limiter is its one possible network call) and
`dispatch()` also carries the decisions out. Adapters feed `dispatch`; tests and
`botfleet simulate` can drive `handle` directly with a virtual clock.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import replace

from bots.config import FleetConfig
from bots.core.brain import Brain, IncompleteReply
from bots.core.commands import OPTED_OUT_COMMANDS, run_command
from bots.core.disclosure import Disclosure
from bots.core.events import Action, Author, Command, Event, Message, React, Reply, Sent
from bots.core.feed import plan_post
from bots.core.gate import channel_allowed
from bots.core.plan import Decision, Plan
from bots.core.ports import Adapter, LLMError, Rate, RateLimiter, Store, Turn
from bots.core.text import sanitize, with_valid_text
from bots.core.triggers import SCORES, Hit, TriggerIndex
from bots.core.usage import UsageMeter
from bots.persona import Persona

log = logging.getLogger("botfleet.fleet")

# After shutdown_seconds, replies still streaming are cut; adapters get this long to mark them so.
CUT_GRACE = 2.0


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
        sleep: Callable[[float], object] = asyncio.sleep,
    ) -> None:
        self.config = config
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
        self.replying = 0
        self._cutting = False
        self.usage = UsageMeter(clock)
        if brain.on_usage is not None:
            self.usage.listeners.append(brain.on_usage)
        brain.on_usage = self.usage.record
        self.disclosure = Disclosure()
        # Platform message id -> persona that wrote it, so adapters can turn "a reply to that message"
        # into a reply trigger for the right persona (webhook and host-bot messages included).
        self._authored: OrderedDict[str, str] = OrderedDict()
        # Reply queues by name; a lock lives only while replies of its queue are waiting or writing.
        self._queues: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
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
                await self._cut(list(self._tasks))
        for adapter in list(self.adapters.values()):
            try:
                await adapter.stop()
            except Exception:
                log.exception("stopping %s adapter failed", adapter.platform)
        await self.brain.close()
        await self.limiter.close()
        await self.store.close()

    async def _cut(self, pending: list[asyncio.Task[None]]) -> None:
        log.warning("shutdown: cancelling %d replies still in flight", len(pending))
        # Replies whose words are streaming end as cut-off replies (see snapshots), which adapters mark
        # or remove; that is one more platform call, so it gets a moment before the final cancel.
        self._cutting = True
        for task in pending:
            task.cancel()
        _, stuck = await asyncio.wait(pending, timeout=CUT_GRACE)
        for task in stuck:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

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

    def execute(self, plan: Plan) -> None:
        for action in plan.actions:
            self._spawn(self._perform(action))

    def _spawn(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def handle(self, event: Event, now: float | None = None) -> Plan:
        now = self.clock() if now is None else now
        plan = Plan(event=event, at=now)
        if not await self.store.first_seen(event.key, self.config.fleet.dedupe_seconds, now):
            plan.note = "duplicate"
            return plan
        author = event.author
        if author.persona_id is None and not author.is_bot:
            if await self.store.is_opted_out(event.platform, author.id) and not (
                isinstance(event, Command) and event.name in OPTED_OUT_COMMANDS
            ):
                # Not even the audit keeps what they wrote: only that the fleet stayed away, and from whom.
                plan.event = dataclasses.replace(event, text="") if isinstance(event, Message) else event
                return self._record(self._ignored(plan, "opted_out", event))
        if isinstance(event, Command):
            await run_command(self, event, plan, now)
            await self._finish(plan, now)
            return self._record(plan)
        if author.is_bot and author.persona_id is None and self.config.fleet.ignore_foreign_bots:
            return self._record(self._ignored(plan, "foreign_bot", event))
        await self.store.append(
            event.conversation,
            Turn(
                speaker=author.name,
                text=event.text,
                at=now,
                user_id="" if author.persona_id else author.id,
                persona_id=author.persona_id,
                message_id=event.id,
            ),
        )
        await self._route(event, plan, now)
        await self._finish(plan, now)
        return self._record(plan)

    async def muted_in(self, platform: str, channel: str, parent: str | None) -> frozenset[str]:
        """Personas muted here; a mute in a channel also covers its threads and topics."""
        muted = await self.store.muted(f"{platform}:{channel}")
        if parent and parent != channel:
            muted |= await self.store.muted(f"{platform}:{parent}")
        return muted

    def _ignored(self, plan: Plan, why: str, event: Event) -> Plan:
        """A message the fleet will not answer at all: the personas whose triggers matched it are
        recorded as skipped with the reason, so `why` and `simulate --all` can show it."""
        plan.note = why
        if isinstance(event, Message):
            hits, _ = self.index.match(event, self.rng)
            personas = self.index.personas
            plan.decisions.extend(Decision(personas[i].id, "skip", why) for i in hits)
        return plan

    def quiet(self, p: Persona, platform: str, user: str | None, now: float) -> str:
        """Why p may not start a reply now, whatever the rate limits say ("" if it may): the LLM
        endpoint is resting after failures, or a daily token budget is spent."""
        if self.brain.breaker.resting():
            return "llm:circuit_open"
        return self.usage.over_budget(self.config, p, platform, user, now)

    async def _finish(self, plan: Plan, now: float) -> None:
        """The last look at a plan's replies, whoever planned them (routing, commands, feeds): a
        budget or the breaker may still silence one, and a first contact gets its AI disclosure."""
        if not any(isinstance(a, Reply) for a in plan.actions):
            return
        kept: list[Action] = []
        for action in plan.actions:
            if isinstance(action, Reply):
                p = self._personas.get(action.persona_id)
                reason = self.quiet(p, action.platform, action.to_user, now) if p else ""
                if reason:
                    silenced = Decision(action.persona_id, "skip", reason)
                    plan.decisions = [
                        silenced if d.persona_id == action.persona_id and d.action == "reply" else d
                        for d in plan.decisions
                    ]
                    continue
                footer = await self.disclosure.footer(self.store, self.config.about.disclosure, action, now)
                if footer != action.footer:
                    action = replace(action, footer=footer)
            kept.append(action)
        plan.actions = kept

    def _record(self, plan: Plan) -> Plan:
        self.audit[plan.event.key] = plan
        if len(self.audit) > self.audit_size:
            self.audit.popitem(last=False)
        for listener in self.listeners:
            listener(plan)
        return plan

    async def _route(self, msg: Message, plan: Plan, now: float) -> None:
        names = (msg.channel, msg.channel_name, msg.parent_channel or "")
        feed = self.config.feeds.find(msg.platform, names) if self.config.feeds.any else None
        if feed is not None and msg.is_post and msg.author.persona_id is None:
            await plan_post(self, msg, plan, now, feed)
            return
        hits, reactions = self.index.match(msg, self.rng)
        # In a feed, answering a reply to a comment is the conversation the post started: the persona
        # answers even without a reply trigger, and its per-channel limit and cooldown do not apply.
        in_thread_reply = feed is not None and msg.reply_to_persona is not None and msg.author.persona_id is None
        if in_thread_reply and (i := self.index.by_id.get(msg.reply_to_persona or "")) is not None:
            if i not in hits or hits[i].score < SCORES["reply"]:
                hits[i] = Hit(i, "reply", "feed")
        if not hits and not reactions:
            return
        personas = self.index.personas
        muted = await self.muted_in(msg.platform, msg.channel, msg.parent_channel)
        rules = self.config.fleet
        from_persona = msg.author.persona_id
        chain = msg.chain + 1 if from_persona else 0

        def blocked(p: Persona) -> str:
            if p.id == from_persona:
                return "self"
            if from_persona and chain > rules.max_bot_chain:
                return f"chain_depth:{chain}>{rules.max_bot_chain}"
            if not channel_allowed(p, names):
                return "channel_denied"
            if p.id in muted:
                return "muted"
            return ""

        user = None if from_persona else msg.author.id
        candidates: list[Hit] = []
        for hit in hits.values():
            p = personas[hit.persona]
            # Budgets and the breaker before the limiter: a quiet persona must not take a slot.
            reason = blocked(p) or self.quiet(p, msg.platform, user, now)
            if reason:
                plan.decisions.append(Decision(p.id, "skip", reason))
            else:
                candidates.append(hit)
        # Mentions and replies first, then by score; ties broken at random.
        candidates.sort(key=lambda h: (-h.score, self.rng.random()))
        if candidates:
            verdicts = await self.limiter.acquire(
                [
                    self.rates(
                        personas[h.persona],
                        msg.platform,
                        msg.conversation,
                        user,
                        conversing=in_thread_reply and personas[h.persona].id == msg.reply_to_persona,
                    )
                    for h in candidates
                ],
                rules.max_responders,
                now,
            )
            delay = 0.0
            for hit, verdict in zip(candidates, verdicts, strict=True):
                p = personas[hit.persona]
                if not verdict.allowed:
                    retry = f" (retry in {verdict.retry_after:.0f}s)" if verdict.retry_after else ""
                    plan.decisions.append(Decision(p.id, "skip", f"{verdict.blocked_by}{retry}"))
                    continue
                delay += self._delay()
                plan.decisions.append(Decision(p.id, "reply", hit.reason))
                plan.actions.append(
                    Reply(
                        persona_id=p.id,
                        platform=msg.platform,
                        channel=msg.channel,
                        reply_to=msg.id,
                        reason=hit.reason,
                        delay=delay,
                        chain=chain,
                        to_user=user,
                        footer=self.footer(p),
                    )
                )
        for r in reactions:
            p = personas[r.persona]
            reason = blocked(p)
            if reason and not reason.startswith("chain_depth"):
                plan.decisions.append(Decision(p.id, "skip", f"react:{reason}"))
                continue
            plan.decisions.append(Decision(p.id, "react", f"{r.kind}:{r.detail}"))
            plan.actions.append(React(p.id, msg.platform, msg.channel, msg.id, r.emoji, reason=f"{r.kind}:{r.detail}"))

    def rates(
        self, p: Persona, platform: str, conversation: str, user: str | None, *, conversing: bool = False
    ) -> list[Rate]:
        """Every limit a reply by p in this conversation must fit. `conversing`: someone answered p's
        feed comment, so only p's overall rate and the channel's cap apply."""
        lim = p.limits
        out = [Rate(f"chan:{conversation}", self.config.fleet.channel_per_minute, 60.0, "channel_per_minute")]
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

    def _delay(self) -> float:
        lo, hi = self.config.fleet.reply_delay_seconds
        return self.rng.uniform(lo, hi) if hi > 0 else 0.0

    def footer(self, p: Persona) -> str:
        if p.sponsor:
            return f"— AI persona for {p.sponsor}"
        return ""

    # --- carrying decisions out -------------------------------------------------------------------

    async def _perform(self, action: Action) -> None:
        adapter = self.adapters.get(action.platform)
        if adapter is None:
            log.warning("no %s adapter for %s", action.platform, type(action).__name__)
            return
        outcome = "failed"
        try:
            if isinstance(action, Reply):
                self.replying += 1
                try:
                    outcome = await self._reply(adapter, action)
                finally:
                    self.replying -= 1
            elif isinstance(action, React):
                persona = self._personas.get(action.persona_id)
                outcome = "gone"
                if persona is not None:
                    await adapter.react(action, persona)
                    outcome = "reacted"
            else:
                await adapter.notify(action)
                outcome = "notified"
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        except Exception:
            log.exception("%s by %s failed", type(action).__name__, getattr(action, "persona_id", "fleet"))
        finally:
            for listener in self.outcomes:
                listener(outcome, action)

    async def _reply(self, adapter: Adapter, reply: Reply) -> str:
        outcome = await self._write_reply(adapter, reply)
        if outcome != "sent":
            self.disclosure.owe(reply, self.config.about.disclosure)
        return outcome

    async def _write_reply(self, adapter: Adapter, reply: Reply) -> str:
        persona = self._personas.get(reply.persona_id)
        if persona is None:
            return "gone"
        if reply.delay > 0:
            await self.sleep(reply.delay)  # type: ignore[misc]
        if not reply.queue:
            return await self._compose(adapter, persona, reply)
        # Comments on one post (and the answers of one panel) are written one after another, so each
        # prompt already holds the ones before it, however close their delays or slow the model.
        lock = self._queues.get(reply.queue)
        if lock is None:
            lock = self._queues[reply.queue] = asyncio.Lock()
        async with lock:
            return await self._compose(adapter, persona, reply)

    async def _compose(self, adapter: Adapter, persona: Persona, reply: Reply) -> str:
        conversation = f"{reply.platform}:{reply.channel}"
        if persona.id in await self.store.muted(conversation):
            return "muted"
        history = await self.store.history(conversation, self.config.llm.history_turns)
        request = self.brain.request(persona, history, reply)
        try:
            sent = await adapter.deliver(reply, persona, self.snapshots(persona, request, reply.footer))
        except LLMError as exc:
            log.warning("reply by %s dropped: %s", persona.id, exc.kind)
            return f"dropped:{exc.kind}"
        except IncompleteReply:
            log.warning("reply by %s cut off: the model stopped without finishing", persona.id)
            return "cut_off"
        if not sent.complete:
            return "cut_off"
        if sent.message_ids:
            await self.feed_back(reply, persona, sent)
        return "sent"

    async def snapshots(self, persona: Persona, request: object, footer: str) -> AsyncIterator[str]:
        """The sanitised text so far, each time more arrives; the footer joins the final one only."""
        text = ""
        shown = ""
        try:
            async for part in self.brain.write(persona, request):  # type: ignore[arg-type]
                text += part
                clean = sanitize(text, persona.name)
                if clean and clean != shown:
                    shown = clean
                    yield clean
        except IncompleteReply:
            raise IncompleteReply(sanitize(text, persona.name)) from None
        except asyncio.CancelledError:
            if not self._cutting:
                raise
            # Shutdown cut this reply mid-way: end it the way a model that stopped early would, so the
            # adapter marks or removes what is already shown instead of leaving half a message.
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            raise IncompleteReply(sanitize(text, persona.name)) from None
        final = sanitize(text, persona.name)
        if footer:
            final = f"{final}\n\n{footer}" if final else footer
        if final != shown:
            yield final

    async def feed_back(self, reply: Reply, persona: Persona, sent: Sent) -> None:
        """A persona's message becomes a turn of the conversation, as if it had been received.

        Telegram never shows a bot another bot's message, and on every platform the fleet knows its
        own chain depth better than any echo could, so own turns come from here, not from the wire.
        """
        for message_id in sent.message_ids:
            self._authored[f"{reply.platform}:{message_id}"] = persona.id
        while len(self._authored) > 20_000:
            self._authored.popitem(last=False)
        replied = self.audit.get(f"{reply.platform}:{reply.reply_to}") if reply.reply_to else None
        replied_persona = None
        channel_name, parent = "", None
        if replied is not None:
            if isinstance(replied.event, Message):
                replied_persona = replied.event.author.persona_id
            if replied.event.channel == reply.channel:
                # Channel allow/deny lists name channels; ids alone would deny every persona-to-persona reply.
                channel_name, parent = replied.event.channel_name, replied.event.parent_channel
        echo = Message(
            platform=reply.platform,
            id=sent.message_ids[0],
            channel=reply.channel,
            author=Author(id=f"persona:{persona.id}", name=persona.name, is_bot=True, persona_id=persona.id),
            # The footer is the fleet's, not the persona's words: kept out of history, the model never
            # learns to write disclosure lines itself.
            text=sent.text.removesuffix(f"\n\n{reply.footer}") if reply.footer else sent.text,
            reply_to_persona=replied_persona,
            reply_to_id=reply.reply_to,
            chain=reply.chain,
            channel_name=channel_name,
            parent_channel=parent,
        )
        await self.dispatch(echo)

    def persona_of(self, platform: str, message_id: str) -> str | None:
        """The persona that wrote a platform message, if the fleet sent it."""
        return self._authored.get(f"{platform}:{message_id}")
