"""The fleet's small HTTP endpoint on `metrics.port`: /metrics, /why/<platform>/<id>, /usage, /healthz;
and, with a Redis store, the audit shared through Redis so that `botfleet why` finds an event whichever
process handled it.

A few lines of asyncio rather than prometheus-client's threaded server: it runs on the fleet's
own event loop, so /why reads the in-memory audit without locks, and it adds no dependency.
Read-only by design: reloading goes through SIGHUP or the Redis the fleet shares (`botfleet reload`),
never over HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import urllib.error
import urllib.request
from collections import deque
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

from bots.core.events import Notice, React, Reply
from bots.ops.logs import trigger_of
from bots.ops.metrics import CONTENT_TYPE, Metrics

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from bots.core.fleet import Fleet
    from bots.core.plan import Plan
    from bots.state.redis import RedisHealth

log = logging.getLogger("botfleet.admin")

MAX_HEADER_LINES = 100
REQUEST_TIMEOUT = 5.0
# How long a shared audit record stays in Redis.
WHY_TTL_SECONDS = 86400


def explain(plan: Plan) -> dict[str, Any]:
    """What `botfleet why` shows: who considered the event and why each spoke or stayed silent.

    Ids, personas and reasons only; the message text stays out of it."""
    event = plan.event
    actions: list[dict[str, Any]] = []
    for a in plan.actions:
        if isinstance(a, Reply):
            actions.append({"type": "reply", "persona": a.persona_id, "reason": a.reason, "delay": round(a.delay, 2)})
        elif isinstance(a, React):
            actions.append({"type": "react", "persona": a.persona_id, "emoji": a.emoji})
        elif isinstance(a, Notice):
            actions.append({"type": "notice", "private": a.private})
    return {
        "event": event.key,
        "platform": event.platform,
        "id": event.id,
        "channel": event.channel,
        "trigger": trigger_of(plan),
        "at": plan.at,
        "note": plan.note,
        "decisions": [{"persona": d.persona_id, "action": d.action, "reason": d.reason} for d in plan.decisions],
        "actions": actions,
    }


class AdminServer:
    def __init__(self, fleet: Fleet, metrics: Metrics, host: str, port: int) -> None:
        self.fleet = fleet
        self.metrics = metrics
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        """Listen; returns the port (useful with port 0)."""
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                line = await reader.readline()
                for _ in range(MAX_HEADER_LINES):
                    if (await reader.readline()) in (b"\r\n", b"\n", b""):
                        break
            method, target, _ = line.decode("latin-1").split(" ", 2)
            status, ctype, body = self.route(method, urlsplit(target).path)
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n"
            )
            writer.write(head.encode("latin-1") + (b"" if method == "HEAD" else body))
            await writer.drain()
        except (TimeoutError, ConnectionError, ValueError):
            pass
        except Exception:
            log.exception("admin request failed")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def route(self, method: str, path: str) -> tuple[str, str, bytes]:
        if method not in ("GET", "HEAD"):
            return "405 Method Not Allowed", "text/plain", b"read-only endpoint\n"
        if path == "/metrics":
            return "200 OK", CONTENT_TYPE, self.metrics.render()
        if path == "/healthz":
            return "200 OK", "text/plain", b"ok\n"
        if path == "/usage":
            return _json("200 OK", usage_report(self.fleet))
        if path.startswith("/why/"):
            platform, _, message_id = path.removeprefix("/why/").partition("/")
            key = f"{unquote(platform)}:{unquote(message_id)}"
            plan = self.fleet.audit.get(key)
            if plan is None:
                return _json("404 Not Found", {"event": key, "error": "not in the audit"})
            return _json("200 OK", explain(plan))
        return "404 Not Found", "text/plain", b"try /metrics, /why/<platform>/<message-id>, /usage, /healthz\n"


def usage_report(fleet: Fleet) -> dict[str, Any]:
    """Today's usage for /usage; the heaviest users as token counts only, unless metrics.usage_user_ids."""
    report = fleet.usage.report(fleet.config)
    if not fleet.config.metrics.usage_user_ids:
        top: dict[str, int] = report.pop("top_users", {})
        report["top_user_tokens"] = list(top.values())
    return report


def _json(status: str, data: Any) -> tuple[str, str, bytes]:
    return status, "application/json", json.dumps(data, ensure_ascii=False).encode() + b"\n"


def fetch_why(base_url: str, platform: str, message_id: str, timeout: float = 5.0) -> dict[str, Any] | None:
    """Ask a running fleet; None when the event is not in its audit."""
    url = f"{base_url.rstrip('/')}/why/{quote(platform, safe='')}/{quote(message_id, safe='')}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            data: dict[str, Any] = json.loads(resp.read())
            return data
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def format_why(found: dict[str, Any]) -> str:
    lines = [f"{found['event']} ({found['trigger']} in {found['channel']})"]
    if found.get("note"):
        lines.append(f"  nobody considered it: {found['note']}")
    elif not found["decisions"]:
        lines.append("  no persona's trigger matched")
    width = max((len(d["persona"]) for d in found["decisions"]), default=0)
    for d in found["decisions"]:
        lines.append(f"  {d['persona']:<{width}}  {d['action']:<5}  {d['reason']}")
    return "\n".join(lines)


# --- the audit shared through Redis ---------------------------------------------------------------


def why_key(prefix: str, platform: str, message_id: str) -> str:
    return f"{prefix}why:{platform}:{message_id}"


class SharedAudit:
    """A fleet listener that writes each plan's `explain` record to Redis, kept `ttl` seconds.

    Off the message path: `record` only queues the plan (bounded; the oldest are dropped when Redis
    cannot keep up), and `run` writes the queue every `interval` in one pipeline, each write bounded by
    `timeout`. While Redis is away, records are dropped rather than kept: `why` is best effort.
    """

    def __init__(
        self,
        client: Redis,
        prefix: str,
        health: RedisHealth | None = None,
        *,
        ttl: int = WHY_TTL_SECONDS,
        interval: float = 0.2,
        timeout: float = 0.3,
        max_queue: int = 2000,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.health = health
        self.ttl = ttl
        self.interval = interval
        self.timeout = timeout
        self._queue: deque[Plan] = deque(maxlen=max_queue)
        self.written = 0

    def record(self, plan: Plan) -> None:
        self._queue.append(plan)

    async def flush(self) -> None:
        batch = list(self._queue)
        self._queue.clear()
        if not batch or (self.health is not None and not self.health.up):
            return
        async with asyncio.timeout(self.timeout):
            async with self.client.pipeline(transaction=False) as pipe:
                for plan in batch:
                    event = plan.event
                    record = json.dumps(explain(plan), ensure_ascii=False)
                    pipe.set(why_key(self.prefix, event.platform, event.id), record, ex=self.ttl)
                await pipe.execute()
        self.written += len(batch)

    async def run(self) -> None:
        from redis.exceptions import RedisError

        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.flush()
            except (RedisError, OSError, TimeoutError) as exc:
                log.debug("sharing the audit failed: %r", exc)


async def read_why(url: str, platform: str, message_id: str, prefix: str | None = None) -> dict[str, Any] | None:
    """An event's audit record straight from Redis; None when no process recorded it lately."""
    from bots.state.redis import PREFIX, make_client

    client = make_client(url, max_connections=1, socket_timeout=5.0, connect_timeout=5.0, pool_timeout=5.0)
    try:
        raw = await client.get(why_key(PREFIX if prefix is None else prefix, platform, message_id))
    finally:
        await client.aclose()
    if raw is None:
        return None
    found: dict[str, Any] = json.loads(raw)
    return found
