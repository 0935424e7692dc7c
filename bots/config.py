"""Fleet configuration (`config.yaml`): pydantic models, ${ENV} interpolation, errors with file:line."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bots.core.safety.settings import SafetyConfig
from bots.yamlfile import ConfigError, Problem, load_yaml, problems_from


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Price(_Strict):
    """Money per 1,000 tokens, in whatever currency the operator bills in."""

    prompt: float = Field(ge=0)
    completion: float = Field(ge=0)


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
    # The local model writes one reply at a time on the CPU, so the answers of a /panel queue behind
    # each other: its deadline per reply (queue included) is longer than an endpoint's.
    local_timeout_seconds: float = Field(default=180.0, gt=0)
    # Cost control. One number prices prompt and completion tokens alike; a mapping prices each.
    price_per_1k: Price | None = None
    # Tokens the whole fleet may spend per UTC day; over it every persona stays quiet until midnight.
    daily_token_budget: int | None = Field(default=None, gt=0)
    # Circuit breaker: after this many failed calls in a row, no call for breaker_seconds, then one trial.
    breaker_failures: int = Field(default=5, ge=1)
    breaker_seconds: float = Field(default=30.0, gt=0)
    # Retries may add at most this share of calls (plus a small reserve), so an outage is not multiplied.
    retry_ratio: float = Field(default=0.1, ge=0, le=1)
    # Images (bots/core/images.py): whether the model is shown photos (auto: by model name), how big.
    vision: bool | Literal["auto"] = "auto"
    image_max_side: int = Field(default=1024, ge=64, le=4096)
    image_detail: Literal["low", "high", "auto"] = "auto"
    images_per_message: int = Field(default=4, ge=0, le=10)
    image_max_bytes: int = Field(default=5_000_000, gt=0, le=50_000_000)
    image_fetch_seconds: float = Field(default=10.0, gt=0, le=120)

    @field_validator("vision", mode="before")
    @classmethod
    def _vision(cls, v: Any) -> Any:
        # One clear message instead of one per member of the union; "true" from ${VAR} counts too.
        text = str(v).strip().lower()
        if isinstance(v, bool) or text == "auto":
            return v if isinstance(v, bool) else "auto"
        if text in ("true", "false"):
            return text == "true"
        raise ValueError("must be auto, true or false")

    @field_validator("price_per_1k", mode="before")
    @classmethod
    def _price(cls, v: Any) -> Any:
        if isinstance(v, int | float) and not isinstance(v, bool):
            return {"prompt": v, "completion": v}
        return v


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
    # With a Redis store, how long an account lease lasts: a dead process's accounts move within this.
    lease_seconds: float = Field(default=15.0, ge=1)
    # Tokens spent on replies to one human per UTC day, across all personas.
    user_daily_tokens: int | None = Field(default=None, gt=0)

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


class MemoryConfig(_Strict):
    """Relationship memory (bots/core/memory): each persona's short notes about each person it talks
    with, written by the LLM after a conversation goes quiet, shown and erased by /memory."""

    # On by default: the product is personas that remember you, and every person sees (/memory) and
    # erases (/memory forget, /forget, /optout) exactly what is kept. A persona may set `memory: false`.
    enabled: bool = True
    # Personas share one set of notes per person instead of each keeping its own.
    shared: bool = False
    # A conversation is summarised once nobody spoke in it for this long, or after every_turns replies.
    quiet_seconds: float = Field(default=600.0, gt=0)
    every_turns: int = Field(default=10, ge=1)
    max_notes: int = Field(default=10, ge=1, le=50)
    max_chars: int = Field(default=600, ge=50, le=4000)
    # Completion tokens one summary may spend.
    max_tokens: int = Field(default=200, gt=0)
    # How long a /link code can be used.
    link_minutes: float = Field(default=10.0, gt=0)
    # A person with a dilemma open for this many days who writes again may be asked how it went by the
    # persona that noted it, with this probability (0: never), within that persona's limits.
    follow_up_days: float = Field(default=3.0, ge=0)
    follow_up_chance: float = Field(default=0.3, ge=0, le=1)


class ConsoleConfig(_Strict):
    enabled: bool = True


class DiscordConfig(_Strict):
    token: str = ""
    api_base_url: str | None = None
    gateway_url: str | None = None
    stream_edits: bool = True
    reply_ping: bool = False
    ignore_foreign_bots: bool = True
    # Where the hash of the registered slash commands is kept, so they are synced only when they change.
    command_state_file: Path | None = None
    # Gateway shards of the host bot (Discord requires them past 2,500 guilds): a number, or "auto" for
    # what GET /gateway/bot recommends at start. Every process sharing a Redis must use the same count.
    shards: int | Literal["auto"] = 1

    @field_validator("shards", mode="before")
    @classmethod
    def _shards(cls, v: Any) -> Any:
        if isinstance(v, str) and v.strip().isdigit():
            v = int(v)  # from an environment variable
        if v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
            return v
        raise ValueError(f"expected a number of shards (1 or more) or auto, got {v!r}")


class TelegramConfig(_Strict):
    token: str = ""
    base_url: str | None = None
    stream_edits: bool = False


class AdaptersConfig(_Strict):
    """`adapters.<platform>` settings. The built-in platforms are declared here; a platform added to
    adapters/registry.py alone arrives as an extra section that bots.loading validates against its
    registry entry (this module is read by the core, so it must not import adapters/)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    console: ConsoleConfig = ConsoleConfig()
    discord: DiscordConfig = DiscordConfig()
    telegram: TelegramConfig = TelegramConfig()


class AboutConfig(_Strict):
    operator: str = "the people who run this server"
    contact: str = ""
    # Appended to a persona's first reply to each person (per platform and persona); "" turns it off.
    disclosure: str = "— AI persona · /about"


class MetricsConfig(_Strict):
    # Prometheus /metrics and the /why audit are served here; None: no HTTP endpoint at all.
    port: int | None = Field(default=None, ge=0, le=65535)
    # Loopback by default: /why shows what the fleet decided, which is nobody else's business.
    host: str = "127.0.0.1"
    # /usage lists the heaviest users by platform user id only when this is true; by default it shows
    # their token counts without saying whose they are (ids are personal data, the endpoint is a dashboard).
    usage_user_ids: bool = False

    @field_validator("port", mode="before")
    @classmethod
    def _off(cls, v: Any) -> Any:
        # `port: ${BOTFLEET_METRICS_PORT:-9464}` with the variable set to "off" turns the endpoint off.
        if isinstance(v, str) and v.strip().lower() in ("", "off", "none", "null"):
            return None
        return v


class LoggingConfig(_Strict):
    # `json` would shadow BaseModel.json, hence the alias.
    json_lines: bool = Field(default=False, alias="json")


class FeedConfig(_Strict):
    """A channel where every new post by a person gets comments from several AI followers."""

    # Channel id or name (Discord forum or text channel, Telegram channel or discussion group, "console").
    channel: str
    comments: int = Field(default=3, ge=1, le=10)
    window_seconds: float = Field(default=60.0, ge=0)
    reactions: bool = True
    personas: Literal["all"] | tuple[str, ...] = "all"


class FeedsConfig(_Strict):
    """`feeds.<platform>`: a list of feed channels per platform. Sections of platforms beyond the
    built-in ones are accepted with the same shape; bots.loading checks their names against the registry."""

    model_config = ConfigDict(extra="allow", frozen=True)
    __pydantic_extra__: dict[str, tuple[FeedConfig, ...]] = Field(init=False)

    console: tuple[FeedConfig, ...] = ()
    discord: tuple[FeedConfig, ...] = ()
    telegram: tuple[FeedConfig, ...] = ()

    def sections(self) -> dict[str, tuple[FeedConfig, ...]]:
        """Every platform's feeds, declared and extra."""
        declared = {name: getattr(self, name) for name in type(self).model_fields}
        return declared | dict(self.model_extra or {})

    @property
    def any(self) -> bool:
        return any(self.sections().values())

    def find(self, platform: str, names: tuple[str, ...]) -> FeedConfig | None:
        """The feed configured for a channel; on a platform with no section (simulate), any platform's."""
        sections = self.sections()
        if platform in sections:
            groups: tuple[tuple[FeedConfig, ...], ...] = (sections[platform],)
        else:
            groups = tuple(sections.values())
        for feeds in groups:
            for feed in feeds:
                if feed.channel in names:
                    return feed
        return None


class FleetConfig(_Strict):
    personas_dir: Path = Path("personas")
    llm: LLMConfig = LLMConfig()
    # A URL; `store: {url: ..., retention_days: N}` is accepted too and lands in these two fields.
    store: str = "memory://"
    # Conversation history older than this is deleted (both stores), whatever history_size allows.
    retention_days: int = Field(default=30, gt=0, le=3650)
    fleet: FleetRules = FleetRules()
    adapters: AdaptersConfig = AdaptersConfig()
    about: AboutConfig = AboutConfig()
    metrics: MetricsConfig = MetricsConfig()
    logging: LoggingConfig = LoggingConfig()
    # Moderation, care mode, healthy use, advice line (bots/core/safety/settings.py).
    safety: SafetyConfig = SafetyConfig()
    memory: MemoryConfig = MemoryConfig()
    # Where `botfleet run` writes its pid, so `botfleet reload` can find it; relative to the config file.
    pid_file: Path | None = Path("botfleet.pid")

    @model_validator(mode="before")
    @classmethod
    def _store_mapping(cls, data: Any) -> Any:
        return lift_store(data)

    feeds: FeedsConfig = FeedsConfig()

    @field_validator("store")
    @classmethod
    def _store(cls, v: str) -> str:
        if not v.startswith(("memory://", "redis://", "rediss://", "unix://")):
            raise ValueError("store must be memory:// or a redis:// URL")
        return v


STORE_KEYS = ("url", "retention_days")


def lift_store(data: Any) -> Any:
    """`store: {url, retention_days}` -> `store: url` + `retention_days`, so `cfg.store` stays a URL."""
    if not isinstance(data, dict) or not isinstance(data.get("store"), dict):
        return data
    spec = data["store"]
    unknown = sorted(str(k) for k in spec if k not in STORE_KEYS)
    if unknown:
        raise ValueError(f"store: unknown key(s) {', '.join(unknown)} (expected {', '.join(STORE_KEYS)})")
    if "retention_days" in spec and "retention_days" in data:
        raise ValueError("retention_days is set twice: at the top level and under store")
    out = {**data, "store": spec.get("url", "memory://")}
    if "retention_days" in spec:
        out["retention_days"] = spec["retention_days"]
    return out


def parse_config(data: Any, file: str, lines: dict[Any, int], base: Path) -> FleetConfig:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([Problem(file, 1, "(file)", "the config must be a mapping")])
    if isinstance(data.get("store"), dict):
        data, lines = _lifted(data, file, lines)
    try:
        cfg = FleetConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(problems_from(exc, file, lines)) from None
    return _resolve_paths(cfg, base)


def _lifted(data: dict[str, Any], file: str, lines: dict[Any, int]) -> tuple[Any, dict[Any, int]]:
    """The `store:` mapping lifted (see lift_store), with lines that follow the lifted fields."""
    # Errors about the lifted fields should still point at the lines they were written on.
    lines = dict(lines)
    for key, loc in (("url", ("store",)), ("retention_days", ("retention_days",))):
        if ("store", key) in lines:
            lines[loc] = lines[("store", key)]
    try:
        return lift_store(data), lines
    except ValueError as exc:
        raise ConfigError([Problem(file, lines.get(("store",), 1), "store", str(exc))]) from None


def _resolve_paths(cfg: FleetConfig, base: Path) -> FleetConfig:
    """Relative paths in the config are relative to the config file's directory."""
    update: dict[str, Any] = {}
    if not cfg.personas_dir.is_absolute():
        update["personas_dir"] = base / cfg.personas_dir
    if cfg.pid_file is not None and not cfg.pid_file.is_absolute():
        update["pid_file"] = base / cfg.pid_file
    state = cfg.adapters.discord.command_state_file
    if state is not None and not state.is_absolute():
        discord = cfg.adapters.discord.model_copy(update={"command_state_file": base / state})
        update["adapters"] = cfg.adapters.model_copy(update={"discord": discord})
    return cfg.model_copy(update=update) if update else cfg


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
