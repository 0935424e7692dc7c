"""Prometheus metrics for one fleet, in its own CollectorRegistry (tests build several fleets).

Everything is fed through the fleet's existing seams (plan listeners, action outcomes, token
usage, the brain's per-call hook), so the per-message cost is a few counter increments. Label
values are kept to small sets: decision reasons are cut to their kind ("keywords:plan" ->
"keywords", "per_minute (retry in 12s)" -> "per_minute"), user ids never become labels.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from bots.core.brain import Usage
from bots.core.events import Action, Command, Message, Notice, React, Reply
from bots.core.usage import cost
from bots.ops.logs import trigger_of

if TYPE_CHECKING:
    from bots.core.fleet import Fleet
    from bots.core.plan import Plan

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Decision reasons that name a limit: these also count as limit hits.
LIMITS = frozenset(
    {
        "channel_per_minute",
        "per_minute",
        "per_channel_per_minute",
        "per_user_per_minute",
        "cooldown",
        "max_responders",
        "budget:fleet",
        "budget:persona",
        "budget:user",
        "llm:circuit_open",
    }
)
# Reasons whose part after ":" is free-form detail (a keyword, a name, a depth) rather than a kind.
_DETAILED = frozenset({"mention", "reply", "dm", "keywords", "image", "regex", "chance", "chain_depth"})


def reason_label(reason: str) -> str:
    reason = re.sub(r"#\d+$", "", reason.split(" (", 1)[0])
    parts = reason.split(":")
    if parts[0] in _DETAILED:
        return parts[0]
    if parts[0] == "react" and len(parts) > 1 and parts[1] in _DETAILED:
        return f"react:{parts[1]}"
    return reason[:40]


class Metrics:
    def __init__(self, fleet: Fleet) -> None:
        # The *_created series double every counter and no dashboard here uses them (process-wide knob).
        disable_created_metrics()
        self.fleet = fleet
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.messages = Counter(
            "botfleet_messages", "Events the fleet handled (duplicates excluded)", ["platform", "kind"], registry=r
        )
        self.ignored = Counter("botfleet_events_ignored", "Events dropped before routing", ["reason"], registry=r)
        self.decisions = Counter(
            "botfleet_decisions", "Persona decisions on events", ["persona", "action", "reason"], registry=r
        )
        self.limit_hits = Counter(
            "botfleet_limit_hits", "Replies held back by a limit or budget", ["limit"], registry=r
        )
        self.replies = Counter("botfleet_replies_sent", "Replies delivered", ["persona", "platform"], registry=r)
        self.reactions = Counter("botfleet_reactions_sent", "Reactions delivered", ["persona", "platform"], registry=r)
        self.notices = Counter("botfleet_notices_sent", "Command answers delivered", ["platform"], registry=r)
        self.outcomes = Counter("botfleet_reply_outcomes", "What became of planned replies", ["outcome"], registry=r)
        self.errors = Counter("botfleet_errors", "Errors by kind", ["kind"], registry=r)
        # care, flagged:<category>, withheld:<category>, nudge, advice: counts only, never the text.
        self.safety = Counter("botfleet_safety_events", "Safety decisions", ["event"], registry=r)
        self.latency = Histogram(
            "botfleet_llm_latency_seconds",
            "Time from sending an LLM request to its last token",
            ["outcome"],
            buckets=(0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60),
            registry=r,
        )
        self.tokens = Counter("botfleet_llm_tokens", "Tokens spent", ["persona", "kind"], registry=r)
        self.cost = Counter("botfleet_llm_cost", "Money spent (llm.price_per_1k units)", ["persona"], registry=r)
        in_flight = Gauge("botfleet_replies_in_flight", "Replies planned and not yet finished", registry=r)
        in_flight.set_function(lambda: fleet.replying)
        circuit = Gauge("botfleet_llm_circuit_open", "1 while the LLM circuit breaker rests", registry=r)
        circuit.set_function(lambda: 1.0 if fleet.brain.breaker.resting() else 0.0)
        personas = Gauge("botfleet_personas", "Personas loaded", registry=r)
        personas.set_function(lambda: len(fleet.personas))
        fleet_tokens = Gauge("botfleet_tokens_today", "Tokens spent today by the whole fleet", registry=r)
        fleet_tokens.set_function(lambda: fleet.usage.totals.get("fleet", 0))

        fleet.listeners.append(self.on_plan)
        fleet.outcomes.append(self.on_outcome)
        fleet.usage.listeners.append(self.on_usage)
        fleet.safety.listeners.append(lambda event: self.safety.labels(event).inc())
        upstream = fleet.brain.on_call

        def on_call(persona_id: str, seconds: float, kind: str | None) -> None:
            self.on_call(persona_id, seconds, kind)
            if upstream is not None:
                upstream(persona_id, seconds, kind)

        fleet.brain.on_call = on_call

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def on_plan(self, plan: Plan) -> None:
        event = plan.event
        kind = trigger_of(plan).partition(":")[0] if isinstance(event, Message | Command) else "other"
        self.messages.labels(event.platform, kind).inc()
        if plan.note:
            self.ignored.labels(plan.note).inc()
        for d in plan.decisions:
            label = reason_label(d.reason)
            self.decisions.labels(d.persona_id, d.action, label).inc()
            if d.action == "skip" and label in LIMITS:
                self.limit_hits.labels(label).inc()

    def on_outcome(self, outcome: str, action: Action) -> None:
        if isinstance(action, Reply):
            self.outcomes.labels(outcome.partition(":")[0]).inc()
            if outcome == "sent":
                self.replies.labels(action.persona_id, action.platform).inc()
            elif outcome == "dropped:circuit_open":
                self.errors.labels("llm_circuit_open").inc()
        elif isinstance(action, React) and outcome == "reacted":
            self.reactions.labels(action.persona_id, action.platform).inc()
        elif isinstance(action, Notice) and outcome == "notified":
            self.notices.labels(action.platform).inc()
        if outcome == "failed":
            self.errors.labels("adapter").inc()

    def on_call(self, persona_id: str, seconds: float, kind: str | None) -> None:
        if kind == "cancelled":
            return
        self.latency.labels("ok" if kind is None else "error").observe(seconds)
        if kind is not None:
            self.errors.labels(f"llm_{kind}").inc()

    def on_usage(self, usage: Usage) -> None:
        self.tokens.labels(usage.persona_id, "prompt").inc(usage.prompt_tokens)
        self.tokens.labels(usage.persona_id, "completion").inc(usage.completion_tokens)
        price = self.fleet.config.llm.price_per_1k
        if price is not None:
            self.cost.labels(usage.persona_id).inc(cost(price, usage.prompt_tokens, usage.completion_tokens))
