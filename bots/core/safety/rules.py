"""What the safety rules add to prompts, and which personas present as professionals."""

from __future__ import annotations

from functools import cache

from bots.core.safety.lexicon import Lexicon
from bots.persona import Persona

# Added to every persona's ground rules.
HUMAN_RULES = (
    "Never say or suggest that you are a person, even in character. Never discourage anyone from spending "
    "time with friends, family or other people; when it fits, encourage their relationships with people."
)
SPONSOR_RULES = (
    "As a sponsored persona you never pressure: no urgency or scarcity (no 'only today', 'last chance', "
    "'buy now', 'only a few left'), no appeals based on what you know about the person, and no claims "
    "about competitors."
)
PROFESSIONAL_RULES = (
    "You are not a licensed professional, whatever your character: say that your words are not medical, "
    "legal or financial advice and suggest asking a qualified person for decisions that matter."
)
CARE_INSTRUCTION = (
    "Care mode: the person you are answering recently wrote something suggesting they may be in distress "
    "or at risk. Drop the act and any joking: be calm, kind and brief, do not give advice about methods, "
    "do not try to be their therapist, and gently encourage them to contact a crisis line (988 in the US, "
    "3114 in France, findahelpline.com elsewhere) or someone they trust."
)


@cache
def shipped() -> Lexicon:
    """The shipped lists, compiled once per process (prompts and checks share them)."""
    return Lexicon.shipped()


def professional(persona: Persona) -> bool:
    """Whether the persona's name or bio presents it as a doctor, therapist, lawyer, financial adviser."""
    lexicon = shipped()
    return bool(lexicon.hits(lexicon.folded(f"{persona.name}. {persona.bio}"), ("professional",)))
