"""The checks every would-be reply passes, whoever planned it (routing, commands, feeds)."""

from __future__ import annotations

from collections.abc import Sequence

from bots.persona import Persona


def channel_allowed(persona: Persona, names: Sequence[str]) -> bool:
    allow, deny = persona.channels.allow, persona.channels.deny
    if deny and any(n in deny for n in names if n):
        return False
    return not allow or any(n in allow for n in names if n)
