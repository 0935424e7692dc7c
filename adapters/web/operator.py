"""The operator page's data: personas with their limits and today's tokens, the live decision log
(the Plans behind `botfleet why`), a few metrics sampled for small charts, and check/reload.

Off unless `adapters.web.admin_token` is set. The token is asked once; the cookie then holds an HMAC
of it (HttpOnly, SameSite=Strict), never the token itself, and every comparison is constant-time.
The operator needs more of the fleet than the FleetView an adapter gets (its audit, usage and
listeners): the object handed to `start` is the Fleet itself, and the App attaches its Ops.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

from aiohttp import web

from bots.core.usage import FLEET, persona_key
from bots.ops.admin import explain
from bots.ops.reload import load

from .server import body, session_of
from .sessions import ADMIN_COOKIE, same

if TYPE_CHECKING:
    from prometheus_client import Counter, Histogram

    from bots.core.fleet import Fleet
    from bots.core.plan import Plan

    from .adapter import WebAdapter

SAMPLES = 120
# Seconds a wrong operator token costs (wrong guesses queue behind each other).
WRONG_TOKEN_PAUSE = 0.5
DECISIONS = 100


def total(metric: Counter | Histogram, suffix: str = "_total") -> float:
    return sum(s.value for m in metric.collect() for s in m.samples if s.name.endswith(suffix))


class OperatorView:
    def __init__(self, adapter: WebAdapter, token: str, *, sample_seconds: float = 5.0) -> None:
        self.adapter = adapter
        self._mark = hmac.new(token.encode(), b"botfleet web operator", hashlib.sha256).hexdigest()
        self._token = token
        self.sample_seconds = sample_seconds
        self.samples: deque[dict[str, float]] = deque(maxlen=SAMPLES)
        self._task: asyncio.Task[None] | None = None
        self._guessing = asyncio.Lock()

    @property
    def fleet(self) -> Fleet:
        return cast("Fleet", self.adapter.fleet)

    def start(self) -> None:
        self.fleet.listeners.append(self.on_plan)
        self._task = asyncio.get_running_loop().create_task(self._sample())

    async def stop(self) -> None:
        with contextlib.suppress(ValueError):
            self.fleet.listeners.remove(self.on_plan)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    # --- signing in -------------------------------------------------------------------------------

    def signed_in(self, request: web.Request) -> bool:
        return same(request.cookies.get(ADMIN_COOKIE, ""), self._mark)

    def _require(self, request: web.Request) -> None:
        if not self.signed_in(request):
            raise web.HTTPUnauthorized(text="operator token required")

    async def login(self, request: web.Request) -> web.Response:
        s = session_of(request)
        token = str((await body(request)).get("token", ""))
        if not token or not same(token, self._token):
            # Wrong guesses wait their turn, one at a time: guessing the token takes ages, not minutes.
            async with self._guessing:
                await self.fleet.sleep(WRONG_TOKEN_PAUSE)
            raise web.HTTPForbidden(text="wrong token")
        s.operator = True
        response = web.json_response({"ok": True})
        response.set_cookie(ADMIN_COOKIE, self._mark, httponly=True, samesite="Strict", path="/", max_age=7 * 86400)
        return response

    async def logout(self, request: web.Request) -> web.Response:
        session_of(request).operator = False
        response = web.json_response({"ok": True})
        response.del_cookie(ADMIN_COOKIE, path="/")
        return response

    # --- what the page shows ----------------------------------------------------------------------

    def on_plan(self, plan: Plan) -> None:
        if not self.adapter.hub.operators:
            return
        self.adapter.hub.publish({"type": "decision", "decision": explain(plan)}, operators=True)

    def point(self) -> dict[str, float]:
        ops = self.adapter.ops
        at = self.fleet.clock()
        if ops is None:
            return {"at": at}
        m = ops.metrics
        return {
            "at": at,
            "messages": total(m.messages),
            "replies": total(m.replies),
            "limit_hits": total(m.limit_hits),
            "errors": total(m.errors),
            "llm_seconds": total(m.latency, "_sum"),
            "llm_calls": total(m.latency, "_count"),
        }

    async def _sample(self) -> None:
        while True:
            self.samples.append(self.point())
            await self.fleet.sleep(self.sample_seconds)

    def personas(self) -> list[dict[str, Any]]:
        fleet = self.fleet
        totals = fleet.usage.totals
        rows = []
        for p in fleet.personas.values():
            used = totals.get(persona_key(p.id), 0)
            cap = p.limits.daily_tokens
            rows.append(
                {
                    "id": p.id,
                    "name": p.name,
                    "limits": p.limits.describe(),
                    "tokens_today": used,
                    "daily_tokens": cap,
                    "remaining": None if cap is None else max(0, cap - used),
                }
            )
        return rows

    def decisions(self) -> list[dict[str, Any]]:
        plans: Iterable[Plan] = list(self.fleet.audit.values())[-DECISIONS:]
        return [explain(p) for p in plans]

    async def state(self, request: web.Request) -> web.Response:
        self._require(request)
        fleet = self.fleet
        cap = fleet.config.llm.daily_token_budget
        used = fleet.usage.totals.get(FLEET, 0)
        left = None if cap is None else max(0, cap - used)
        return web.json_response(
            {
                "personas": self.personas(),
                "fleet": {"tokens_today": used, "budget": cap, "remaining": left},
                "decisions": self.decisions(),
                "samples": [*self.samples, self.point()],
            }
        )

    async def check(self, request: web.Request) -> web.Response:
        self._require(request)
        ops = self.adapter.ops
        _, personas, problems = await asyncio.to_thread(load, ops.config_path if ops else None)
        return web.json_response(
            {"ok": not problems, "problems": [str(p) for p in problems], "personas": len(personas)}
        )

    async def reload(self, request: web.Request) -> web.Response:
        self._require(request)
        ops = self.adapter.ops
        if ops is None:
            raise web.HTTPConflict(text="this fleet runs without ops: nothing to reload")
        problems = await ops.reload()
        return web.json_response(
            {"ok": not problems, "problems": [str(p) for p in problems], "personas": len(self.fleet.personas)}
        )

    def routes(self, app: web.Application) -> None:
        r = app.router
        r.add_post("/api/operator/login", self.login)
        r.add_post("/api/operator/logout", self.logout)
        r.add_get("/api/operator/state", self.state)
        r.add_post("/api/operator/check", self.check)
        r.add_post("/api/operator/reload", self.reload)
