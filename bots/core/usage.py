"""Token accounting and daily budgets.

Every finished LLM call reports its tokens (the API's usage, or an estimate for the local model)
through `Brain.on_usage`. The meter counts them per UTC day for the fleet, each persona and each
human, and answers the plan-time question "may this persona still speak (to this person) today?"
from memory, without I/O. With a shared store, `sync()` pushes this process's new counts and pulls
the day's totals of all processes every few seconds, so several processes share one budget (up to
a few seconds of overshoot, and a reply already started is always finished: never a half answer).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bots.config import FleetConfig
from bots.core.brain import Usage
from bots.persona import Persona

log = logging.getLogger("botfleet.usage")

FLEET = "fleet"


def utc_day(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")


def persona_key(persona_id: str) -> str:
    return f"p:{persona_id}"


def user_key(platform: str, user_id: str) -> str:
    return f"u:{platform}:{user_id}"


class UsageMeter:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.day = utc_day(clock())
        # Today's totals as far as this process knows (its own counts plus the last shared pull).
        self.totals: dict[str, int] = {}
        self._pending: dict[str, int] = {}
        # This process's own split per persona today: [prompt, completion, estimated calls].
        self.detail: dict[str, list[int]] = {}
        self.listeners: list[Callable[[Usage], None]] = []
        # (scope, key) already logged as over budget today: "logged once", not once per message.
        self._told: set[tuple[str, str]] = set()

    def _roll(self, now: float) -> None:
        day = utc_day(now)
        if day != self.day:
            # Counts not yet pushed for yesterday are dropped: budgets start afresh either way.
            self.day = day
            self.totals = {}
            self._pending = {}
            self.detail = {}
            self._told = set()

    def record(self, usage: Usage, now: float | None = None) -> None:
        self._roll(self.clock() if now is None else now)
        n = usage.prompt_tokens + usage.completion_tokens
        keys = [FLEET, persona_key(usage.persona_id)]
        if usage.user:
            keys.append(f"u:{usage.user}")
        for key in keys:
            self.totals[key] = self.totals.get(key, 0) + n
            self._pending[key] = self._pending.get(key, 0) + n
        row = self.detail.setdefault(usage.persona_id, [0, 0, 0])
        row[0] += usage.prompt_tokens
        row[1] += usage.completion_tokens
        row[2] += int(usage.estimated)
        for listener in self.listeners:
            listener(usage)

    def over_budget(self, config: FleetConfig, p: Persona, platform: str, user: str | None, now: float) -> str:
        """Empty when p may speak, else the decision reason: budget:fleet, budget:persona or budget:user."""
        self._roll(now)
        totals = self.totals
        cap = config.llm.daily_token_budget
        if cap is not None and totals.get(FLEET, 0) >= cap:
            return self._quiet("fleet", FLEET, "the fleet reached llm.daily_token_budget")
        cap = p.limits.daily_tokens
        if cap is not None and totals.get(persona_key(p.id), 0) >= cap:
            return self._quiet("persona", p.id, f"persona {p.id} reached limits.daily_tokens")
        cap = config.fleet.user_daily_tokens
        if cap is not None and user and totals.get(user_key(platform, user), 0) >= cap:
            return self._quiet("user", f"{platform}:{user}", f"user {platform}:{user} reached fleet.user_daily_tokens")
        return ""

    def _quiet(self, scope: str, key: str, why: str) -> str:
        if (scope, key) not in self._told:
            self._told.add((scope, key))
            log.warning("budget: %s; quiet until 00:00 UTC", why)
        return f"budget:{scope}"

    async def sync(self, store: Any, now: float | None = None) -> bool:
        """Share counts through the store; False when the store cannot (each process then counts alone)."""
        add = getattr(store, "add_usage", None)
        if add is None:
            return False
        self._roll(self.clock() if now is None else now)
        day = self.day
        batch, self._pending = self._pending, {}
        try:
            shared: dict[str, int] = await add(day, batch)
        except Exception:
            log.warning("usage sync failed; counting locally until the store answers", exc_info=True)
            for key, n in batch.items():
                self._pending[key] = self._pending.get(key, 0) + n
            return True
        if day != self.day:
            return True
        # Counts recorded while the store answered are in _pending and not yet in `shared`.
        merged = dict(shared)
        for key, n in self._pending.items():
            merged[key] = merged.get(key, 0) + n
        self.totals = merged
        return True

    def report(self, config: FleetConfig) -> dict[str, Any]:
        """Today's usage for /usage: shared totals, this process's split, and money where priced."""
        price = config.llm.price_per_1k
        personas: dict[str, Any] = {}
        for pid, (prompt, completion, estimated) in sorted(self.detail.items()):
            row: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion}
            if estimated:
                row["estimated_calls"] = estimated
            if price is not None:
                row["cost"] = round(cost(price, prompt, completion), 6)
            personas[pid] = row
        users = {k[2:]: v for k, v in self.totals.items() if k.startswith("u:")}
        return {
            "day": self.day,
            "fleet_tokens": self.totals.get(FLEET, 0),
            "fleet_budget": config.llm.daily_token_budget,
            "persona_tokens": {k[2:]: v for k, v in sorted(self.totals.items()) if k.startswith("p:")},
            "this_process": personas,
            "users": len(users),
            "top_users": dict(sorted(users.items(), key=lambda kv: -kv[1])[:10]),
        }


def cost(price: Any, prompt: int, completion: int) -> float:
    return prompt / 1000 * price.prompt + completion / 1000 * price.completion
