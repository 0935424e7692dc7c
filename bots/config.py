"""Fleet configuration (`config.yaml`): pydantic models, ${ENV} interpolation, errors with file:line."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bots.yamlfile import ConfigError, Problem, load_yaml, problems_from


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LLMConfig(_Strict):
    provider: Literal["auto", "openai", "local"] = "auto"
    model: str = "gpt-4o-mini"
    base_url: str | None = None
    # Empty: the SDK's own OPENAI_API_KEY is used.
    api_key: str | None = None
    max_concurrency: int = Field(default=4, gt=0)
    timeout_seconds: float = Field(default=30.0, gt=0)
    max_retries: int = Field(default=2, ge=0, le=10)
    temperature: float = Field(default=0.8, ge=0, le=2)
    max_tokens: int = Field(default=300, gt=0)
    # Characters of channel history that go into a prompt (a cheap stand-in for a token budget).
    history_chars: int = Field(default=4000, gt=0)
    history_turns: int = Field(default=20, gt=0)
    stream: bool = True
    # Local model settings (provider local).
    local_threads: int | None = None
    local_context: int = Field(default=2048, ge=256)


class FleetRules(_Strict):
    max_responders: int = Field(default=3, ge=1)
    channel_per_minute: int = Field(default=12, gt=0)
    max_bot_chain: int = Field(default=2, ge=0)
    reply_delay_seconds: tuple[float, float] = (1.0, 4.0)
    ignore_foreign_bots: bool = True
    panel_size: tuple[int, int] = (3, 5)
    history_size: int = Field(default=50, gt=0)
    dedupe_seconds: float = Field(default=600.0, gt=0)
    shutdown_seconds: float = Field(default=10.0, ge=0)

    @field_validator("reply_delay_seconds")
    @classmethod
    def _delay(cls, v: tuple[float, float]) -> tuple[float, float]:
        if v[0] < 0 or v[1] < v[0]:
            raise ValueError("reply_delay_seconds must be [min, max] with 0 <= min <= max")
        return v

    @field_validator("panel_size")
    @classmethod
    def _panel(cls, v: tuple[int, int]) -> tuple[int, int]:
        if v[0] < 1 or v[1] < v[0]:
            raise ValueError("panel_size must be [min, max] with 1 <= min <= max")
        return v


class ConsoleConfig(_Strict):
    enabled: bool = True


class DiscordConfig(_Strict):
    token: str = ""
    api_base_url: str | None = None
    gateway_url: str | None = None
    stream_edits: bool = True
    reply_ping: bool = False
    ignore_foreign_bots: bool = True


class TelegramConfig(_Strict):
    token: str = ""
    base_url: str | None = None
    stream_edits: bool = False


class AdaptersConfig(_Strict):
    console: ConsoleConfig = ConsoleConfig()
    discord: DiscordConfig = DiscordConfig()
    telegram: TelegramConfig = TelegramConfig()


class AboutConfig(_Strict):
    operator: str = "the people who run this server"
    contact: str = ""


class FleetConfig(_Strict):
    personas_dir: Path = Path("personas")
    llm: LLMConfig = LLMConfig()
    store: str = "memory://"
    fleet: FleetRules = FleetRules()
    adapters: AdaptersConfig = AdaptersConfig()
    about: AboutConfig = AboutConfig()

    @field_validator("store")
    @classmethod
    def _store(cls, v: str) -> str:
        if not v.startswith(("memory://", "redis://", "rediss://", "unix://")):
            raise ValueError("store must be memory:// or a redis:// URL")
        return v

    @model_validator(mode="after")
    def _resolve(self) -> FleetConfig:
        return self


def parse_config(data: Any, file: str, lines: dict[Any, int], base: Path) -> FleetConfig:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([Problem(file, 1, "(file)", "the config must be a mapping")])
    try:
        cfg = FleetConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(problems_from(exc, file, lines)) from None
    if not cfg.personas_dir.is_absolute():
        cfg = cfg.model_copy(update={"personas_dir": (base / cfg.personas_dir)})
    return cfg


def load_config(path: Path | None, env: Any = None) -> FleetConfig:
    """Load config.yaml; a missing default file gives the defaults (personas/ beside the working dir)."""
    env = os.environ if env is None else env
    if path is None:
        path = Path("config.yaml")
        if not path.exists():
            return _apply_env(FleetConfig(), env)
    data, lines = load_yaml(path, env)
    return _apply_env(parse_config(data, str(path), lines, path.resolve().parent), env)


def _apply_env(cfg: FleetConfig, env: Any) -> FleetConfig:
    # REDIS_URL is the conventional switch in containers; it wins over a memory:// default.
    url = env.get("REDIS_URL")
    if url and cfg.store.startswith("memory://"):
        cfg = cfg.model_copy(update={"store": url})
    return cfg
