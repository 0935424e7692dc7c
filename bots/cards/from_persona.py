"""A persona as a Character Card V2 (what SillyTavern and most card tools import)."""

from __future__ import annotations

from typing import Any

from bots.persona import Persona


def mes_example(persona: Persona) -> str:
    return "\n".join(f"<START>\n{{{{user}}}}: {ex.user}\n{{{{char}}}}: {ex.reply}" for ex in persona.examples)


def to_card(persona: Persona) -> dict[str, Any]:
    info = persona.card
    # Settings only botfleet reads, so an import of this card gives the same persona back. Never the
    # platforms section: that holds tokens.
    own = persona.model_dump(mode="json", include={"bio", "triggers", "reactions", "limits", "channels", "model"})
    own["triggers"] = [t.model_dump(mode="json", exclude_none=True) for t in persona.triggers]
    own["reactions"] = [r.model_dump(mode="json", exclude_none=True) for r in persona.reactions]
    own["limits"] = persona.limits.model_dump(mode="json", exclude_none=True)
    own["model"] = persona.model.model_dump(mode="json", exclude_none=True)
    if persona.sponsor:
        own["sponsor"] = persona.sponsor
    if persona.avatar_url:
        own["avatar"] = persona.avatar_url
    data: dict[str, Any] = {
        "name": persona.name,
        "description": persona.prompt,
        "personality": "",
        "scenario": "",
        "first_mes": persona.greeting or "",
        "mes_example": mes_example(persona),
        "creator_notes": info.creator_notes if info else "",
        "system_prompt": "",
        "post_history_instructions": "",
        "alternate_greetings": [],
        "tags": list(info.tags) if info else [],
        "creator": info.creator if info else "",
        "character_version": info.character_version if info else "",
        "extensions": {"botfleet": own},
    }
    # The V1 fields at the top too, as SillyTavern writes them, for tools that only read V1.
    v1 = {k: data[k] for k in ("name", "description", "personality", "scenario", "first_mes", "mes_example")}
    return {"spec": "chara_card_v2", "spec_version": "2.0", **v1, "data": data}
