"""Everything `botfleet run` adds around a fleet to operate it: metrics and the /why endpoint,
decision logs and secret masking, the pid file and SIGHUP reload, usage sharing and retention.

With a Redis store several processes may run one fleet, so two things go through Redis as well:
`botfleet reload` publishes on `<prefix>reload`, which every process subscribes to and handles like
SIGHUP, and every process writes its audit records to Redis (`SharedAudit`) for `botfleet why`.

`Ops(fleet, config_path).start()` after the fleet is built; `close()` before `fleet.stop()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from bots.ops import logs
from bots.ops.admin import AdminServer, SharedAudit, read_why
from bots.ops.metrics import Metrics
from bots.ops.reload import reload_fleet, remove_pid, write_pid
from bots.yamlfile import Problem

if TYPE_CHECKING:
    from bots.core.fleet import Fleet

log = logging.getLogger("botfleet")

T = TypeVar("T")


class Ops:
    def __init__(
        self,
        fleet: Fleet,
        config_path: Path | None,
        *,
        usage_sync_seconds: float = 5.0,
        prune_seconds: float = 3600.0,
    ) -> None:
        self.fleet = fleet
        self.config_path = config_path
        self.usage_sync_seconds = usage_sync_seconds
        self.prune_seconds = prune_seconds
        self.metrics = Metrics(fleet)
        self.admin: AdminServer | None = None
        self._pid_file = fleet.config.pid_file
        self._task: asyncio.Task[None] | None = None
        self._reloading: asyncio.Task[list[Problem]] | None = None
        self.shared_audit: SharedAudit | None = None
        self._shared: list[asyncio.Task[None]] = []
        self._closed = False
        fleet.listeners.append(logs.DecisionLog(fleet))

    def mask_secrets(self) -> None:
        cfg = self.fleet.config
        logs.configure(
            cfg, json_lines=cfg.logging.json_lines, extra_secrets=logs.persona_secrets(self.fleet.personas.values())
        )

    async def start(self) -> None:
        self.mask_secrets()
        cfg = self.fleet.config
        if cfg.metrics.port is not None:
            self.admin = AdminServer(self.fleet, self.metrics, cfg.metrics.host, cfg.metrics.port)
            port = await self.admin.start()
            log.info("metrics on http://%s:%d/metrics, audit on /why/<platform>/<message-id>", cfg.metrics.host, port)
        if self._pid_file is not None and not write_pid(self._pid_file):
            self._pid_file = None
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        except (NotImplementedError, RuntimeError, AttributeError):  # pragma: no cover - not on the main thread
            pass
        if not await self.fleet.usage.sync(self.fleet.store):
            log.info("token budgets count this process only: the store does not share usage")
        self._task = asyncio.create_task(self._maintain())
        self._share_through_redis()

    def _share_through_redis(self) -> None:
        from bots.state.redis import FallbackStore, subscribe

        store = self.fleet.store
        if not isinstance(store, FallbackStore):
            return
        client, prefix = store.primary.client, store.primary.prefix
        self.shared_audit = SharedAudit(client, prefix, store.health)
        self.fleet.listeners.append(self.shared_audit.record)

        async def reload_requested(data: bytes) -> None:
            log.info("reload requested through redis")
            self.request_reload()

        self._shared = [
            asyncio.create_task(self.shared_audit.run(), name="botfleet-shared-audit"),
            asyncio.create_task(subscribe(client, f"{prefix}reload", reload_requested), name="botfleet-reload"),
        ]

    def request_reload(self) -> None:
        if self._closed:
            # The handler stays installed while the fleet drains: SIGHUP's default would kill it.
            log.info("shutting down: reload ignored")
            return
        if self._reloading is not None and not self._reloading.done():
            log.info("reload already running")
            return
        self._reloading = asyncio.create_task(self.reload())

    async def reload(self) -> list[Problem]:
        problems = await reload_fleet(self.fleet, self.config_path)
        if not problems:
            # New tokens in the files must be masked from now on too.
            self.mask_secrets()
        return problems

    async def _maintain(self) -> None:
        """Share token counts every few seconds; prune expired history every so often; start due memory updates."""
        loop = asyncio.get_running_loop()
        next_prune = loop.time()
        while True:
            await asyncio.sleep(self.usage_sync_seconds)
            # Memory updates that are due run in the background, never holding up this loop.
            self.fleet.memory.kick()
            try:
                await self.fleet.usage.sync(self.fleet.store)
                if loop.time() >= next_prune:
                    next_prune = loop.time() + self.prune_seconds
                    removed = await self.fleet.store.prune(self.fleet.clock())
                    if removed:
                        days = self.fleet.config.retention_days
                        log.info("retention: deleted %d message(s) older than %d days", removed, days)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("maintenance failed")

    async def close(self) -> None:
        """Before fleet.stop(): stop serving and maintaining, push the last counts, drop the pid file."""
        self._closed = True
        for task in (self._task, self._reloading, *self._shared):
            # Until it is done: on Python 3.11 a cancel can get lost in an expiring asyncio.timeout().
            while task is not None and not task.done():
                task.cancel()
                await asyncio.wait([task], timeout=0.5)
            if task is not None and not task.cancelled() and task.exception() is not None:
                log.debug("%s ended with %r", task.get_name(), task.exception())
        with contextlib.suppress(Exception):
            await self.fleet.usage.sync(self.fleet.store)
        if self.shared_audit is not None:
            with contextlib.suppress(Exception):
                await self.shared_audit.flush()
        if self.admin is not None:
            await self.admin.close()
        if self._pid_file is not None:
            remove_pid(self._pid_file)


class Unreachable(Exception):
    """The shared Redis did not answer a command run from the CLI; the message says why."""


async def _on_redis(call: Awaitable[T]) -> T:
    # redis-py is imported only when the store is Redis (a memory-store run never needs it).
    from redis.exceptions import RedisError

    try:
        return await call
    except (RedisError, OSError) as exc:
        raise Unreachable(str(exc) or type(exc).__name__) from exc


async def publish_reload(url: str, prefix: str | None = None) -> int:
    """Ask every fleet process on this Redis to reload; returns how many were listening."""
    from bots.state.redis import PREFIX, make_client

    client = make_client(url, max_connections=1, socket_timeout=5.0, connect_timeout=5.0, pool_timeout=5.0)
    try:
        return int(await _on_redis(client.publish(f"{PREFIX if prefix is None else prefix}reload", b"reload")))
    finally:
        await client.aclose()


async def shared_status(url: str) -> str:
    """Which process holds which account, read from the Redis the processes share."""
    from bots.ops.leasestatus import status  # speaks Redis: imported for a Redis store only

    return await _on_redis(status(url))


async def shared_why(url: str, platform: str, message_id: str) -> dict[str, Any] | None:
    """An event's audit record, whichever process of the fleet handled it."""
    return await _on_redis(read_why(url, platform, message_id))
