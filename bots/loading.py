"""Loading config.yaml and every persona file, with every problem reported as FILE:LINE: field: problem."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from adapters import registry as platforms
from bots.config import FleetConfig, load_config
from bots.persona import Persona, load_personas
from bots.yamlfile import ConfigError, Problem, line_of, load_yaml


def load_all(config: Path | None) -> tuple[FleetConfig, list[Persona]]:
    """Config and personas, with every problem of both collected into one ConfigError."""
    problems: list[Problem] = []
    cfg: FleetConfig | None = None
    try:
        cfg = load_config(config)
        personas_dir = cfg.personas_dir
    except ConfigError as exc:
        # Keep going: the persona files' problems are worth reporting in the same run.
        problems.extend(exc.problems)
        personas_dir = raw_personas_dir(config)
    try:
        personas = load_personas(personas_dir)
    except ConfigError as exc:
        problems.extend(exc.problems)
        personas = []
    if cfg is not None:
        problems.extend(platform_problems(cfg, personas))
        problems.extend(feed_problems(cfg, personas, config))
    if problems or cfg is None:
        raise ConfigError(problems)
    return cfg, personas


def raw_personas_dir(config: Path | None) -> Path:
    """Where personas live according to a config file that failed validation (default: personas/)."""
    path = config or Path("config.yaml")
    try:
        data, _ = load_yaml(path)
    except ConfigError:
        data = None
    raw = data.get("personas_dir") if isinstance(data, dict) else None
    return path.resolve().parent / (raw if isinstance(raw, str) and raw else "personas")


def platform_problems(cfg: FleetConfig, personas: list[Persona]) -> list[Problem]:
    """Checks that depend on which platforms are in use (Telegram's fixed reaction emoji set)."""
    return platforms.check_problems(cfg, personas)


def feed_problems(cfg: FleetConfig, personas: list[Persona], config: Path | None) -> list[Problem]:
    """Feed persona lists must name personas that exist (a typo would silently shrink the feed)."""
    missing = _unknown_feed_personas(cfg, {p.id for p in personas})
    if not missing or not personas:
        return []
    path = config or Path("config.yaml")
    _, lines = load_yaml(path)
    return [
        Problem(
            str(path),
            line_of(lines, ("feeds", platform, n, "personas")),
            f"feeds.{platform}[{n}].personas",
            f"no persona with id {pid!r}",
        )
        for platform, n, pid in missing
    ]


def _unknown_feed_personas(cfg: FleetConfig, known: set[str]) -> list[tuple[str, int, str]]:
    """(platform, feed index, persona id) for each feed persona that does not exist."""
    missing: list[tuple[str, int, str]] = []
    for platform in platforms.PLATFORMS:
        for n, feed in enumerate(getattr(cfg.feeds, platform, ())):
            if feed.personas != "all":
                missing.extend((platform, n, pid) for pid in feed.personas if pid not in known)
    return missing


def loaded_or_reported(config: Path | None, out: TextIO | None = None) -> tuple[FleetConfig, list[Persona]] | None:
    """load_all, printing every problem as FILE:LINE: field: problem instead of raising."""
    try:
        return load_all(config)
    except ConfigError as exc:
        for p in exc.problems:
            print(p, file=out or sys.stdout)
        return None


def config_or_reported(config: Path | None) -> FleetConfig | None:
    """The config alone (commands that talk to a running fleet need no personas), problems on stderr."""
    try:
        return load_config(config)
    except ConfigError as exc:
        for p in exc.problems:
            print(p, file=sys.stderr)
        return None
