"""Persona model and loading of `personas/*.yaml`, one persona per file."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bots.core.regex import Regex, RegexError
from bots.yamlfile import ConfigError, Loc, Problem, line_of, load_yaml, problems_from

TRIGGER_KINDS = ("mention", "keywords", "regex", "reply", "command", "dm", "image")


def _compiles(pattern: str | None) -> str | None:
    # Compiled with the engine that will run it (RE2), so `check` refuses exactly what could not run.
    if pattern is not None:
        try:
            Regex(pattern)
        except RegexError as exc:
            raise ValueError(f"invalid regular expression: {exc}") from None
    return pattern


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Example(_Strict):
    user: str
    reply: str


class ModelOverrides(_Strict):
    name: str | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, gt=0, le=4096)
    # Whether this persona's model sees photos (None: llm.vision decides, by this model's name).
    vision: bool | None = None


class Trigger(_Strict):
    """One trigger: exactly one kind key, plus an optional chance. `chance` alone is free will."""

    mention: bool | None = None
    keywords: tuple[str, ...] | None = None
    regex: str | None = None
    reply: bool | None = None
    command: bool | None = None
    dm: bool | None = None
    # A message with a photo (`image: true`, with `chance` to answer only some).
    image: bool | None = None
    chance: float | None = Field(default=None, ge=0, le=1)

    @field_validator("keywords")
    @classmethod
    def _keywords(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if v is not None:
            if not v:
                raise ValueError("keywords must not be empty")
            if any(not k.strip() for k in v):
                raise ValueError("keywords must not contain blank entries")
            v = tuple(k.strip().lower() for k in v)
        return v

    @field_validator("regex")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        return _compiles(v)

    @model_validator(mode="after")
    def _one_kind(self) -> Trigger:
        kinds = [k for k in TRIGGER_KINDS if getattr(self, k) is not None]
        if len(kinds) > 1:
            raise ValueError(f"a trigger has exactly one kind, found {', '.join(kinds)}")
        if not kinds and self.chance is None:
            raise ValueError(f"a trigger needs one of {', '.join(TRIGGER_KINDS)} or chance")
        if self.image is False:
            raise ValueError("image: false is not a trigger; leave it out")
        for k in ("mention", "reply", "command", "dm"):
            if getattr(self, k) is False:
                raise ValueError(f"{k}: false is not a trigger; leave it out")
            if getattr(self, k) is not None and self.chance is not None:
                raise ValueError(f"chance applies to keywords, regex, image and free will, not to {k}")
        return self

    @property
    def kind(self) -> str:
        for k in TRIGGER_KINDS:
            if getattr(self, k) is not None:
                return k
        return "chance"

    @property
    def probability(self) -> float:
        return 1.0 if self.chance is None else self.chance


class ReactionRule(_Strict):
    keywords: tuple[str, ...] | None = None
    regex: str | None = None
    emoji: str
    chance: float = Field(default=1.0, ge=0, le=1)

    @field_validator("keywords")
    @classmethod
    def _keywords(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return None if v is None else tuple(k.strip().lower() for k in v if k.strip())

    @field_validator("regex")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        return _compiles(v)

    @model_validator(mode="after")
    def _has_match(self) -> ReactionRule:
        if not self.keywords and not self.regex:
            raise ValueError("a reaction needs keywords or regex")
        return self


class Limits(_Strict):
    per_minute: int | None = Field(default=None, gt=0)
    per_channel_per_minute: int | None = Field(default=None, gt=0)
    per_user_per_minute: int | None = Field(default=None, gt=0)
    cooldown_seconds: float | None = Field(default=None, gt=0)
    daily_tokens: int | None = Field(default=None, gt=0)

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in self.model_dump(exclude_none=True).items()]
        return ",".join(parts) or "none"


class Channels(_Strict):
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()


class PlatformAccount(_Strict):
    token: str = ""


class Platforms(_Strict):
    """A persona's own account per platform. Platforms beyond the built-in ones are accepted with the
    same shape; bots.loading checks their names against adapters/registry.py."""

    model_config = ConfigDict(extra="allow", frozen=True)
    __pydantic_extra__: dict[str, PlatformAccount | None] = Field(init=False)

    discord: PlatformAccount | None = None
    telegram: PlatformAccount | None = None


class CardInfo(_Strict):
    """Where an imported character card came from (`botfleet import`): kept for export and for people,
    never shown to the model."""

    creator: str = ""
    character_version: str = ""
    creator_notes: str = ""
    tags: tuple[str, ...] = ()


ID_RE = re.compile(r"^[a-z0-9_-]+$")


def is_setting(loc: Loc) -> bool:
    """Whether a persona field holds a setting or secret, the only values where ${VAR} is filled from
    the environment: text a model sees (prompt, bio, examples, greeting) may come from someone else's
    character card, and a `${OPENAI_API_KEY}` written there must stay those characters."""
    return loc in (("avatar",), ("model", "name")) or (len(loc) == 3 and loc[0] == "platforms" and loc[2] == "token")


class Persona(_Strict):
    id: str
    name: str = Field(min_length=1, max_length=80)
    avatar: str | None = None
    bio: str = ""
    prompt: str = Field(min_length=1)
    examples: tuple[Example, ...] = ()
    model: ModelOverrides = ModelOverrides()
    triggers: tuple[Trigger, ...] = ()
    reactions: tuple[ReactionRule, ...] = ()
    limits: Limits = Limits()
    channels: Channels = Channels()
    platforms: Platforms = Platforms()
    # A brand this persona speaks for: disclosed in its bio and in every reply.
    sponsor: str | None = None
    # Said (macros filled) in front of the persona's first reply in each channel: a card's first_mes.
    greeting: str | None = None
    card: CardInfo | None = None
    # Relationship memory for this persona (default: the fleet's memory.enabled). A sponsored persona
    # never keeps memory: a brand persona must not profile people.
    memory: bool | None = None
    # Where it was loaded from (file, field path -> line), so later checks can point at a line too.
    _source: tuple[str, dict[Any, int]] = PrivateAttr(default=("", {}))

    def line_of(self, *loc: str | int) -> tuple[str, int]:
        file, lines = self._source
        return file, line_of(lines, loc)

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not ID_RE.match(v):
            raise ValueError("id must match [a-z0-9_-]+")
        return v

    @field_validator("memory")
    @classmethod
    def _memory(cls, v: bool | None, info: ValidationInfo) -> bool | None:
        if v and info.data.get("sponsor"):
            raise ValueError("a sponsored persona never keeps memory (a brand persona must not profile people)")
        return v

    @property
    def avatar_url(self) -> str | None:
        """The avatar when platforms can fetch it; an imported card's avatar is a file beside the YAML."""
        if self.avatar and self.avatar.startswith(("https://", "http://")):
            return self.avatar
        return None

    def has(self, kind: str) -> bool:
        return any(t.kind == kind for t in self.triggers)

    @property
    def display_bio(self) -> str:
        if self.sponsor and self.sponsor.lower() not in self.bio.lower():
            return f"{self.bio} (AI persona sponsored by {self.sponsor})".strip()
        return self.bio

    def describe(self) -> str:
        kinds = ",".join(t.kind if t.chance is None else f"{t.kind}@{t.chance:g}" for t in self.triggers)
        return f"{self.id}  triggers={kinds or 'none'}  limits={self.limits.describe()}"


def parse_persona(data: Any, file: str, lines: dict[Any, int]) -> Persona:
    if not isinstance(data, dict):
        raise ConfigError([Problem(file, 1, "(file)", "a persona file must be a mapping")])
    try:
        persona = Persona.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(problems_from(exc, file, lines)) from None
    persona._source = (file, lines)
    return persona


def load_persona(path: Path, env: Any = None) -> Persona:
    data, lines = load_yaml(path, env, is_setting)
    return parse_persona(data, str(path), lines)


def load_personas(directory: Path, env: Any = None) -> list[Persona]:
    """Load every `*.yaml`/`*.yml` in directory; collects every problem before raising."""
    problems: list[Problem] = []
    personas: list[Persona] = []
    where: dict[str, tuple[str, int]] = {}
    if not directory.is_dir():
        raise ConfigError([Problem(str(directory), 0, "personas_dir", "not a directory")])
    files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    for path in files:
        try:
            data, lines = load_yaml(path, env, is_setting)
            persona = parse_persona(data, str(path), lines)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        if persona.avatar and not persona.avatar_url and not (path.parent / persona.avatar).is_file():
            problem = "no such file beside this persona (an avatar is an http(s) URL or a PNG file next to it)"
            problems.append(Problem(str(path), lines.get(("avatar",), 1), "avatar", problem))
        if persona.id in where:
            other, _ = where[persona.id]
            problems.append(Problem(str(path), lines.get(("id",), 1), "id", f"duplicate id (also in {other})"))
            continue
        where[persona.id] = (str(path), lines.get(("id",), 1))
        personas.append(persona)
    if not files:
        problems.append(Problem(str(directory), 0, "personas_dir", "no persona files (*.yaml) found"))
    if problems:
        raise ConfigError(problems)
    return personas
