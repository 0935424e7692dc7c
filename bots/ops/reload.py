"""Hot reload (SIGHUP, `botfleet reload`) and the pid file that lets `botfleet reload` find the fleet.

A reload re-reads config.yaml and every persona file and validates them exactly like `botfleet
check`. Valid: the new config and personas take effect at once (`Fleet.load` swaps the trigger
index; adapters and their connections are untouched). Invalid: nothing changes, and every problem
is logged as `FILE:LINE: field: problem`. Settings that only matter when something is built at
start (store, retention, history size, leases, adapters, LLM endpoint, the HTTP port) are reported as needing a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adapters import registry as platforms
from bots.config import FleetConfig
from bots.loading import load_all
from bots.persona import Persona
from bots.yamlfile import ConfigError, Problem

if TYPE_CHECKING:
    from bots.core.fleet import Fleet

log = logging.getLogger("botfleet.reload")

# Dotted settings read only at start; a change is logged, not applied.
RESTART_ONLY = (
    "store",
    # Built into the store and the lease manager at start.
    "retention_days",
    "fleet.history_size",
    "fleet.lease_seconds",
    # Each platform's adapter settings: see adapters/registry.py.
    *platforms.restart_only(),
    "metrics",
    "logging",
    "pid_file",
    "llm.provider",
    "llm.base_url",
    "llm.api_key",
    "llm.timeout_seconds",
    "llm.local_timeout_seconds",
    "llm.max_retries",
    "llm.max_concurrency",
    "llm.stream",
    "llm.retry_ratio",
    "llm.local_threads",
    "llm.local_context",
)


def _get(cfg: FleetConfig, dotted: str) -> Any:
    value: Any = cfg
    for part in dotted.split("."):
        # A registry-only platform's section (adapters.web) exists only when config.yaml has it.
        value = getattr(value, part, None)
    return value


def _accounts(personas: Any) -> dict[str, tuple[str, ...]]:
    return {p.id: platforms.persona_accounts(p) for p in personas}


def load(config_path: Path | None) -> tuple[FleetConfig | None, list[Persona], list[Problem]]:
    try:
        cfg, personas = load_all(config_path)
    except ConfigError as exc:
        return None, [], exc.problems
    return cfg, personas, []


def apply(fleet: Fleet, cfg: FleetConfig, personas: list[Persona]) -> list[str]:
    """Swap config and personas into a running fleet; returns the settings that need a restart."""
    old = fleet.config
    restart = [k for k in RESTART_ONLY if _get(old, k) != _get(cfg, k)]
    was, now = _accounts(fleet.personas.values()), _accounts(personas)
    accounts = sorted(pid for pid, tokens in now.items() if tokens != was.get(pid, tuple("" for _ in tokens)))
    if accounts:
        restart.append(f"platform accounts of {', '.join(accounts)}")
    fleet.config = cfg
    fleet.brain.config = cfg.llm
    fleet.brain.breaker.failures = cfg.llm.breaker_failures
    fleet.brain.breaker.open_seconds = cfg.llm.breaker_seconds
    fleet.load(personas)
    return restart


async def reload_fleet(fleet: Fleet, config_path: Path | None) -> list[Problem]:
    """Re-read and validate; apply if valid. Returns the problems (empty: reloaded)."""
    cfg, personas, problems = await asyncio.to_thread(load, config_path)
    if problems or cfg is None:
        log.error(
            "reload rejected: %d problem(s); still running the previous %d personas", len(problems), len(fleet.personas)
        )
        for problem in problems:
            log.error("%s", problem)
        return problems
    before = set(fleet.personas)
    restart = apply(fleet, cfg, personas)
    after = set(fleet.personas)
    log.info(
        "reloaded: %d personas (added: %s; removed: %s)",
        len(after),
        ", ".join(sorted(after - before)) or "none",
        ", ".join(sorted(before - after)) or "none",
    )
    if restart:
        log.warning("changed settings that take effect only after a restart: %s", ", ".join(restart))
    return []


# --- the pid file ---------------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def write_pid(path: Path) -> bool:
    other = read_pid(path)
    if other is not None and other != os.getpid() and _alive(other):
        # Several processes from one directory (scaling out on one host): the newest one answers reload.
        log.warning("pid file %s names running process %d; now naming this one (%d)", path, other, os.getpid())
    try:
        path.write_text(f"{os.getpid()}\n")
    except OSError as exc:
        log.warning("cannot write pid file %s (%s): `botfleet reload` will not find this process", path, exc.strerror)
        return False
    return True


def remove_pid(path: Path) -> None:
    if read_pid(path) == os.getpid():
        with contextlib.suppress(OSError):
            path.unlink()


def signal_reload(cfg: FleetConfig) -> tuple[int | None, str]:
    """SIGHUP to the process in cfg.pid_file; returns (pid or None, what happened)."""
    if cfg.pid_file is None:
        return None, "pid_file is not set in the config, so the running fleet cannot be found (send it SIGHUP)"
    pid = read_pid(cfg.pid_file)
    if pid is None:
        return None, f"no running fleet: {cfg.pid_file} is missing or unreadable"
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        return None, f"no running fleet: process {pid} from {cfg.pid_file} is gone"
    except PermissionError:
        return None, f"not allowed to signal process {pid}"
    return pid, f"reload signalled to process {pid}; its log reports the result"
