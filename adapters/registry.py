"""Every platform the fleet can run on, in one table: what the rest of the process needs to know about
a platform without importing its SDK.

An entry says where the platform's settings live in config.yaml (`adapters.<name>`), how to find its
tokens (the fleet's own account and each persona's `platforms.<name>.token`), which extra checks
`botfleet check` runs when the platform is in use, which settings only take effect after a restart,
and how to build its adapter. The factory and the checks import the adapter package lazily: the SDKs
(discord.py, python-telegram-bot) are heavy, and `botfleet check` or the console must not pay for them.

Adding a platform: a package under adapters/ with the adapter, and one entry in `PLATFORMS`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from adapters.console import ConsoleAdapter
from adapters.web.settings import WebConfig, default_feeds
from bots.config import ConsoleConfig, DiscordConfig, FeedConfig, FleetConfig, TelegramConfig
from bots.core.ports import Adapter
from bots.persona import Persona
from bots.yamlfile import Problem

Factory = Callable[[FleetConfig, Sequence[Persona]], Adapter]
Check = Callable[[Sequence[Persona]], list[Problem]]


@dataclass(frozen=True)
class Platform:
    name: str
    # The pydantic model of `adapters.<name>` in config.yaml.
    settings_model: type[BaseModel]
    factory: Factory
    # False: the platform has no accounts (the console); it runs when asked for, or when nothing else can.
    uses_tokens: bool = True
    # Problems `botfleet check` reports only while the platform is in use (e.g. Telegram's emoji set).
    check: Check | None = None
    # Dotted settings read when the adapter is built; a reload logs them as needing a restart.
    restart_only: tuple[str, ...] = ()
    # An account-less room started when no platform has a token: "always" (the console), "terminal"
    # (only when a person runs botfleet in a terminal: the web room), or "never".
    fallback: str = "always"
    # Settings fields holding secrets besides `token` (masked in logs like tokens).
    secret_fields: tuple[str, ...] = ()
    # Feed channels used when config.yaml has no `feeds.<name>` section.
    default_feeds: tuple[FeedConfig, ...] = ()

    def settings(self, cfg: FleetConfig) -> Any:
        # A platform known only to this registry has no declared field: its section may be absent.
        return getattr(cfg.adapters, self.name, None) or self.settings_model()

    def config_token(self, cfg: FleetConfig) -> str:
        return str(getattr(self.settings(cfg), "token", "") or "")

    def persona_token(self, persona: Persona) -> str:
        account = getattr(persona.platforms, self.name, None)
        return str(getattr(account, "token", "") or "") if account is not None else ""

    def in_use(self, cfg: FleetConfig, personas: Sequence[Persona]) -> bool:
        """A token for the fleet's account or for any persona's own account."""
        if not self.uses_tokens:
            return False
        return bool(self.config_token(cfg)) or any(self.persona_token(p) for p in personas)

    def config_secrets(self, cfg: FleetConfig) -> list[str]:
        settings = self.settings(cfg)
        extra = (str(getattr(settings, f, "") or "") for f in self.secret_fields)
        return [t for t in (self.config_token(cfg), *extra) if t]

    def persona_secrets(self, persona: Persona) -> list[str]:
        return [t for t in (self.persona_token(persona),) if t]


def _console(cfg: FleetConfig, personas: Sequence[Persona]) -> Adapter:
    return ConsoleAdapter()


def _discord(cfg: FleetConfig, personas: Sequence[Persona]) -> Adapter:
    from adapters.discord import DiscordAdapter  # discord.py: heavy, only when Discord runs

    return DiscordAdapter(cfg.adapters.discord, list(personas))


def _telegram(cfg: FleetConfig, personas: Sequence[Persona]) -> Adapter:
    from adapters.telegram import TelegramAdapter  # python-telegram-bot: heavy, only when Telegram runs

    return TelegramAdapter(cfg.adapters.telegram, list(personas))


def _web(cfg: FleetConfig, personas: Sequence[Persona]) -> Adapter:
    from adapters.web import WebAdapter  # aiohttp: only when the web room runs

    return WebAdapter(PLATFORMS["web"].settings(cfg))


def _telegram_check(personas: Sequence[Persona]) -> list[Problem]:
    from adapters.telegram.emoji import check_reactions  # imports telegram.constants

    return check_reactions(personas)


PLATFORMS: dict[str, Platform] = {
    p.name: p
    for p in (
        Platform("console", ConsoleConfig, _console, uses_tokens=False, restart_only=("adapters.console",)),
        Platform("discord", DiscordConfig, _discord, restart_only=("adapters.discord",)),
        Platform("telegram", TelegramConfig, _telegram, check=_telegram_check, restart_only=("adapters.telegram",)),
        Platform(
            "web",
            WebConfig,
            _web,
            uses_tokens=False,
            restart_only=("adapters.web",),
            fallback="terminal",
            secret_fields=("admin_token",),
            default_feeds=default_feeds(),
        ),
    )
}


def names() -> list[str]:
    return list(PLATFORMS)


def config_secrets(cfg: FleetConfig) -> list[str]:
    return [s for p in PLATFORMS.values() for s in p.config_secrets(cfg)]


def persona_secrets(personas: Sequence[Persona]) -> list[str]:
    return [s for persona in personas for p in PLATFORMS.values() for s in p.persona_secrets(persona)]


def persona_accounts(persona: Persona) -> tuple[str, ...]:
    """A persona's tokens on every platform, in registry order (a reload compares them)."""
    return tuple(p.persona_token(persona) for p in PLATFORMS.values())


def restart_only() -> tuple[str, ...]:
    return tuple(key for p in PLATFORMS.values() for key in p.restart_only)


def check_problems(cfg: FleetConfig, personas: Sequence[Persona]) -> list[Problem]:
    """The extra checks of every platform in use."""
    return [
        problem
        for p in PLATFORMS.values()
        if p.check is not None and p.in_use(cfg, personas)
        for problem in p.check(personas)
    ]
