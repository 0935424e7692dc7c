"""Loading config.yaml and every persona file, with every problem reported as FILE:LINE: field: problem."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from pydantic import ValidationError

from adapters import registry as platforms
from bots.config import FleetConfig, load_config
from bots.persona import Persona, load_personas
from bots.yamlfile import ConfigError, Problem, line_of, load_yaml, problems_from


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
        cfg, unknown = platform_sections(cfg, personas, config)
        problems.extend(unknown)
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


def platform_sections(
    cfg: FleetConfig, personas: list[Persona], config: Path | None
) -> tuple[FleetConfig, list[Problem]]:
    """Settings of platforms that only the registry knows (`adapters.<name>`, `feeds.<name>`, a persona's
    `platforms.<name>`): validated against the registry entry, or reported when no platform has that name."""
    problems: list[Problem] = []
    path = config or Path("config.yaml")
    lines = load_yaml(path)[1] if path.exists() else {}
    known = ", ".join(platforms.names())
    settings: dict[str, object] = {}
    for name, raw in (cfg.adapters.model_extra or {}).items():
        entry = platforms.PLATFORMS.get(name)
        if entry is None:
            where = line_of(lines, ("adapters", name))
            problems.append(Problem(str(path), where, f"adapters.{name}", f"no such platform (known: {known})"))
            continue
        try:
            settings[name] = entry.settings_model.model_validate(raw or {})
        except ValidationError as exc:
            problems.extend(problems_from(exc, str(path), lines, ("adapters", name)))
    for name in cfg.feeds.model_extra or {}:
        if name not in platforms.PLATFORMS:
            where = line_of(lines, ("feeds", name))
            problems.append(Problem(str(path), where, f"feeds.{name}", f"no such platform (known: {known})"))
    for persona in personas:
        for name in persona.platforms.model_extra or {}:
            if name not in platforms.PLATFORMS:
                file, where = persona.line_of("platforms", name)
                problems.append(Problem(file, where, f"platforms.{name}", f"no such platform (known: {known})"))
    if settings:
        cfg = cfg.model_copy(update={"adapters": cfg.adapters.model_copy(update=settings)})
    sections = cfg.feeds.sections()
    # A platform's own default feeds (the web room's feed page) unless config.yaml lists its feeds.
    entries = platforms.PLATFORMS.values()
    defaults = {p.name: p.default_feeds for p in entries if p.default_feeds and p.name not in sections}
    if defaults:
        cfg = cfg.model_copy(update={"feeds": cfg.feeds.model_copy(update=defaults)})
    return cfg, problems


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
            f"feeds.{platform}[{n + 1}].personas",
            f"no persona with id {pid!r}",
        )
        for platform, n, pid in missing
    ]


def _unknown_feed_personas(cfg: FleetConfig, known: set[str]) -> list[tuple[str, int, str]]:
    """(platform, feed index, persona id) for each feed persona that does not exist."""
    missing: list[tuple[str, int, str]] = []
    for platform, feeds in cfg.feeds.sections().items():
        for n, feed in enumerate(feeds):
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
