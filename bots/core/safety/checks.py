"""What `botfleet check` says about a safety configuration: warnings, not errors (the fleet runs)."""

from __future__ import annotations

from collections.abc import Sequence

from bots.config import FleetConfig
from bots.core.safety.rules import professional
from bots.persona import Persona


def safety_warnings(cfg: FleetConfig, personas: Sequence[Persona]) -> list[str]:
    safety = cfg.safety
    out: list[str] = []
    if safety.moderation == "off":
        out.append(
            "safety.moderation is off: nothing that comes in or goes out is moderated, and care mode cannot trigger"
        )
    if not safety.care.enabled:
        out.append(
            "safety.care.enabled is false: a person writing about self-harm gets persona replies, not the care message"
        )
    elif safety.action("self_harm") != "care":
        out.append(f"safety.actions.self_harm is {safety.action('self_harm')}: care mode never triggers")
    if not safety.healthy_use.enabled:
        out.append(
            "safety.healthy_use.enabled is false: nobody is reminded they have been talking to AI for a long time"
        )
    for p in personas:
        if professional(p):
            out.append(
                f"persona {p.id}: its name or bio presents it as a professional (doctor, therapist, lawyer, "
                "financial adviser); every reply gets the not-professional-advice line"
            )
    return out
