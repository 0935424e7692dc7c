"""The `safety:` section of config.yaml. Everything is on by default, with the local moderator."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

CATEGORIES = ("self_harm", "violence", "harassment", "hate", "sexual")
Action = Literal["skip", "care", "log"]

CARE_EN = (
    "It sounds like you might be going through something really hard. You deserve support from a person, "
    "not an AI. If you are in danger right now, call your local emergency number. In the US you can call "
    "or text 988 (Suicide & Crisis Lifeline); in France call 3114; elsewhere, findahelpline.com lists free, "
    "confidential helplines. If you can, reach out to someone you trust today."
)
CARE_FR = (
    "On dirait que vous traversez un moment très difficile. Vous méritez le soutien d'une personne, pas "
    "d'une IA. En cas de danger immédiat, appelez le 112 (ou le 15). En France, le 3114 (numéro national de "
    "prévention du suicide) répond 24h/24, gratuitement ; ailleurs, findahelpline.com liste des lignes "
    "d'écoute. Si vous le pouvez, parlez aujourd'hui à quelqu'un de confiance."
)
NUDGE_EN = (
    "A gentle reminder: you have been chatting with AI personas for a while today. They are language "
    "models, not people. Maybe it is a good moment to reach out to a friend or someone you know?"
)
NUDGE_FR = (
    "Petit rappel : vous discutez avec des personas IA depuis un moment aujourd'hui. Ce sont des modèles "
    "de langage, pas des personnes. C'est peut-être le bon moment pour contacter un ami ou un proche ?"
)
ADVICE_EN = "(Not professional advice: for medical, legal or financial decisions, ask a qualified person.)"
ADVICE_FR = (
    "(Ceci n'est pas un avis professionnel : pour une décision médicale, juridique ou financière, "
    "consultez un professionnel.)"
)


DEFAULT_ACTIONS: dict[str, Action] = {
    "self_harm": "care",
    "violence": "skip",
    "harassment": "skip",
    "hate": "skip",
    "sexual": "skip",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CareConfig(_Strict):
    # Off means a person in crisis gets persona banter like anyone else: `check` warns about it.
    enabled: bool = True
    # How long the personas stay quiet toward that person in that conversation (unless addressed).
    quiet_minutes: float = Field(default=30.0, ge=0)
    # Picks "<lang>-<country>" messages first (e.g. en-GB), when the operator knows the audience.
    country: str = ""
    # By language ("en", "fr") or language and country ("en-GB"); "en" is the last resort.
    messages: dict[str, str] = Field(default_factory=lambda: {"en": CARE_EN, "fr": CARE_FR})

    def message(self, lang: str) -> str:
        for key in (f"{lang}-{self.country}" if self.country else "", lang, "en"):
            if key and key in self.messages:
                return self.messages[key]
        return CARE_EN


class HealthyUseConfig(_Strict):
    enabled: bool = True
    # One nudge a UTC day once a person passes either threshold talking with the personas.
    messages_per_day: int = Field(default=150, gt=0)
    minutes_per_day: float = Field(default=120.0, gt=0)
    messages: dict[str, str] = Field(default_factory=lambda: {"en": NUDGE_EN, "fr": NUDGE_FR})


class SafetyConfig(_Strict):
    # auto: the OpenAI moderation endpoint when the LLM endpoint is OpenAI itself, else local.
    moderation: Literal["auto", "openai", "local", "off"] = "auto"
    # What a flagged message gets: skip (no persona answers it), care (care mode), log (only counted).
    # A persona's reply flagged in any category but `log` is never posted.
    actions: dict[str, Action] = Field(default_factory=lambda: dict(DEFAULT_ACTIONS))
    care: CareConfig = CareConfig()
    healthy_use: HealthyUseConfig = HealthyUseConfig()
    # Shown to the person when a persona's reply is withheld; "" shows nothing.
    notice: str = ""
    advice_line: dict[str, str] = Field(default_factory=lambda: {"en": ADVICE_EN, "fr": ADVICE_FR})

    @field_validator("actions")
    @classmethod
    def _known(cls, v: dict[str, Action]) -> dict[str, Action]:
        unknown = sorted(set(v) - set(CATEGORIES))
        if unknown:
            raise ValueError(f"unknown categories {', '.join(unknown)} (known: {', '.join(CATEGORIES)})")
        return v

    def action(self, category: str) -> Action:
        return self.actions.get(category, "skip")
