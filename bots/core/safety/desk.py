"""The fleet's safety desk: what comes in is moderated before routing, care mode and its quiet time,
healthy-use nudges, and the guard every reply passes before it is shown (outgoing.py).

Reasons it writes into Plans: `safety:care` (a message showed self-harm risk: the care message went
out and no persona answers), `safety:care_quiet` (a persona stays quiet toward that person for the
quiet time), `safety:flagged:<category>` (a message or a reply the moderator flagged). A flagged
message's text is blanked in the audit and never enters the history. Events for metrics go to
`listeners` as labels (care, flagged:<category>, withheld:<category>, nudge, advice), never text.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from bots.core.events import Command, Event, Message, Notice, React, Reply
from bots.core.plan import Decision, Plan
from bots.core.safety.moderator import CLEAN, LocalModerator, Moderator, NoModerator, Verdict, moderated_part
from bots.core.safety.outgoing import ReplyGuard
from bots.core.safety.rules import CARE_INSTRUCTION, shipped
from bots.core.safety.settings import SafetyConfig
from bots.core.usage import utc_day
from bots.persona import Persona

if TYPE_CHECKING:
    from bots.core.fleet import Fleet

log = logging.getLogger("botfleet.safety")

# Reasons of replies to a person who addressed a persona directly: those still answer in care mode.
DIRECT = ("mention", "reply", "dm", "command", "ask", "panel")
# Commands whose text reaches a persona, and so is moderated like a message.
ASKING = ("ask", "panel")
# Time between two messages of a person above this counts as a break, not as time spent chatting.
SESSION_GAP = 300.0
REMEMBERED = 100_000


OFF = NoModerator()


class SafetyDesk:
    def __init__(self, fleet: Fleet, moderator: Moderator | None = None) -> None:
        self.fleet = fleet
        self.local = LocalModerator(shipped())
        # The moderator with I/O the app chose (OpenAI), if any; see `moderator`.
        self.remote = moderator
        self.listeners: list[Callable[[str], None]] = []
        # (platform, user) -> when they last wrote, for time spent.
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()

    @property
    def config(self) -> SafetyConfig:
        return self.fleet.config.safety

    @property
    def moderator(self) -> Moderator:
        """Read per call: a reload may turn moderation off, or back to the lists."""
        mode = self.config.moderation
        if mode == "off":
            return OFF
        if mode == "local" or self.remote is None:
            return self.local
        return self.remote

    def emit(self, label: str) -> None:
        for listener in self.listeners:
            listener(label)

    # --- what comes in ---------------------------------------------------------------------------

    async def check(self, text: str) -> Verdict:
        text = moderated_part(text)  # the remote moderator too: an endpoint caps its input
        try:
            return await self.moderator.check(text)
        except Exception:
            # A moderator that fails must not open the door: the local lists answer instead.
            log.exception("moderation by %s failed; the local lists decide", self.moderator.name)
            return self.local.check_now(text) if self.config.moderation != "off" else CLEAN

    async def screen(self, event: Event, plan: Plan, now: float) -> bool:
        """True when the event was dealt with here (care or skip): then it is neither remembered nor
        routed, and its text is blanked in the audit."""
        text = _text_of(event)
        if not text or event.author.persona_id is not None or event.author.is_bot:
            return False
        verdict = await self.check(text)
        if not verdict.flagged:
            return False
        actions = {c: self.config.action(c) for c in verdict.categories}
        for category in verdict.categories:
            self.emit(f"flagged:{category}")
            log.info("incoming %s flagged %s (%s)", event.key, category, actions[category])
        care = self.config.care.enabled and "care" in actions.values()
        skip = next((c for c, a in actions.items() if a == "skip"), None)
        if not care and skip is None:
            return False
        plan.event = dataclasses.replace(event, text="") if isinstance(event, Message) else event
        if care:
            await self._give_care(event, plan, verdict, now)
        else:
            self._ignore(event, plan, f"safety:flagged:{skip}")
        return True

    async def _give_care(self, event: Event, plan: Plan, verdict: Verdict, now: float) -> None:
        self.emit("care")
        self._ignore(event, plan, "safety:care")
        # In the Store, so every process (and this one after a restart) keeps the quiet time.
        until = now + self.config.care.quiet_minutes * 60
        try:
            await self.fleet.store.set_care(event.platform, event.author.id, event.conversation, until, now)
        except Exception:
            # The care message still goes out; only the quiet time is lost.
            log.exception("care mode could not be stored; the quiet time is not kept")
        plan.actions.append(
            Notice(
                platform=event.platform,
                channel=event.channel,
                text=self.config.care.message(verdict.lang),
                reply_to=event.id,
                private=True,
                to_user=event.author.id,
                command_id=event.id if isinstance(event, Command) else None,
            )
        )

    def _ignore(self, event: Event, plan: Plan, reason: str) -> None:
        plan.note = reason
        if isinstance(event, Message):
            hits, _ = self.fleet.index.match(event, self.fleet.rng)
            personas = self.fleet.index.personas
            plan.decisions.extend(Decision(personas[i].id, "skip", reason) for i in hits)
        elif event.persona:
            plan.decisions.append(Decision(event.persona, "skip", reason))

    async def in_care(self, event: Event, now: float, care_until: float | None = None, care_read: bool = False) -> bool:
        if care_read:
            return care_until is not None  # read with the admission (bots/core/intake.py)
        try:
            until = await self.fleet.store.care_until(event.platform, event.author.id, event.conversation, now)
        except Exception:
            # Unknown counts as in care: at worst a persona keeps quiet, or adds care to its prompt.
            log.exception("care mode could not be read; treating the person as in care")
            return True
        return until is not None

    async def after_route(
        self, event: Event, plan: Plan, now: float, *, care_until: float | None = None, care_read: bool = False
    ) -> None:
        """Care quiet time for the replies planned to a person in care, then their time spent. With
        `care_read`, `care_until` is the care end the admission read, and the store is not asked."""
        if event.author.persona_id is not None or event.author.is_bot:
            return
        # One store read, and only when a persona would answer or react: most messages plan nothing.
        toward = any(
            isinstance(a, React) or (isinstance(a, Reply) and a.to_user == event.author.id) for a in plan.actions
        )
        if toward and self.config.care.enabled and await self.in_care(event, now, care_until, care_read):
            self._quiet(event, plan)
        if self.config.healthy_use.enabled and any(
            isinstance(a, Reply) and a.to_user == event.author.id for a in plan.actions
        ):
            await self._count_use(event, plan, now)

    def _quiet(self, event: Event, plan: Plan) -> None:
        kept: list[object] = []
        quiet: set[str] = set()
        for action in plan.actions:
            if isinstance(action, React):
                quiet.add(action.persona_id)
                continue
            if isinstance(action, Reply) and action.to_user == event.author.id:
                if not action.reason.startswith(DIRECT) and not isinstance(event, Command):
                    quiet.add(action.persona_id)
                    continue
                extra = f"{action.instruction}\n\n{CARE_INSTRUCTION}".strip()
                action = dataclasses.replace(action, instruction=extra)
            kept.append(action)
        plan.actions = kept  # type: ignore[assignment]
        plan.decisions = [
            Decision(d.persona_id, "skip", "safety:care_quiet") if d.persona_id in quiet and d.action != "skip" else d
            for d in plan.decisions
        ]

    # --- healthy use -----------------------------------------------------------------------------

    async def _count_use(self, event: Event, plan: Plan, now: float) -> None:
        cfg = self.config.healthy_use
        who = (event.platform, event.author.id)
        last = self._seen.get(who)
        self._seen[who] = now
        self._seen.move_to_end(who)
        while len(self._seen) > REMEMBERED:
            self._seen.popitem(last=False)
        spent = 0 if last is None or now - last > SESSION_GAP else round(now - last)
        key = f"use:{event.platform}:{event.author.id}"
        day = utc_day(now)
        try:
            totals = await self.fleet.store.add_daily(day, key, {"messages": 1, "seconds": spent})
            over = (
                totals.get("messages", 0) > cfg.messages_per_day or totals.get("seconds", 0) > cfg.minutes_per_day * 60
            )
            if not over or totals.get("nudged", 0):
                return
            # The first process to count the nudge sends it: once a day, however many processes.
            if (await self.fleet.store.add_daily(day, key, {"nudged": 1})).get("nudged") != 1:
                return
        except Exception:
            log.exception("healthy-use counters unavailable; no nudge this time")
            return
        self.emit("nudge")
        lang = self.local.check_now(_text_of(event)).lang
        plan.actions.append(
            Notice(
                platform=event.platform,
                channel=event.channel,
                text=_pick(cfg.messages, lang),
                reply_to=event.id,
                private=True,
                to_user=event.author.id,
            )
        )

    def forget(self, platform: str, user_id: str) -> None:
        """/forget: when they last wrote goes too (the store's forget_user erases their counters)."""
        self._seen.pop((platform, user_id), None)

    # --- what goes out ---------------------------------------------------------------------------

    def guard(self, persona: Persona, reply: Reply) -> ReplyGuard:
        return ReplyGuard(self, persona, reply)

    async def withheld(self, reply: Reply, category: str, now: float | None = None) -> str:
        """A reply the guard stopped: counted, logged without its text, written into the audited plan
        of the message it answered; the person gets the configured notice, if any."""
        fleet = self.fleet
        reason = f"safety:flagged:{category}"
        self.emit(f"withheld:{category}")
        log.warning("reply by %s withheld: %s", reply.persona_id, reason)
        plan = fleet.audit.get(f"{reply.platform}:{reply.reply_to}") if reply.reply_to else None
        if plan is not None:
            plan.decisions.append(Decision(reply.persona_id, "skip", reason))
        if self.config.notice:
            adapter = fleet.adapters.get(reply.platform)
            notice = Notice(
                reply.platform, reply.channel, self.config.notice, reply.reply_to, private=True, to_user=reply.to_user
            )
            if adapter is not None:
                try:
                    await adapter.notify(notice)
                except Exception:
                    log.exception("the withheld-reply notice could not be sent")
        return f"withheld:{category}"


def _text_of(event: Event) -> str:
    if isinstance(event, Message):
        return event.text
    return event.args if event.name in ASKING else ""


def _pick(messages: Mapping[str, str], lang: str) -> str:
    return messages.get(lang) or messages.get("en") or next(iter(messages.values()), "")
