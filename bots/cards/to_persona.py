"""A parsed card into persona fields (a dict ready for YAML), with a note for everything not mapped."""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from bots.cards import CardError
from bots.cards.examples import parse_examples
from bots.cards.spec import Card
from bots.persona import Persona

USER = "the person"
LONG_PROMPT = 8000
DEFAULT_TRIGGERS: list[dict[str, Any]] = [{"mention": True}, {"reply": True}, {"command": True}]
DEFAULT_LIMITS: dict[str, Any] = {
    "per_minute": 4,
    "per_channel_per_minute": 2,
    "per_user_per_minute": 2,
    "cooldown_seconds": 20,
    "daily_tokens": 100_000,
}
# What a card exported by botfleet may carry back in extensions.botfleet (never platforms: tokens).
RESTORED = ("bio", "triggers", "reactions", "limits", "channels", "sponsor", "model")

_CHAR = re.compile(r"\{\{char\}\}|<bot>", re.IGNORECASE)
_USERM = re.compile(r"\{\{user\}\}|<user>", re.IGNORECASE)
_COMMENT = re.compile(r"\{\{//.*?\}\}", re.DOTALL)
_ORIGINAL = re.compile(r"\{\{original\}\}", re.IGNORECASE)
_OTHER = re.compile(r"\{\{[^{}]{1,60}\}\}")


def resolve(text: str, char: str) -> str:
    """{{char}} -> the persona's name, {{user}} -> "the person"; V3 comments dropped."""
    text = _COMMENT.sub("", text)
    return _USERM.sub(lambda _: USER, _CHAR.sub(lambda _: char, text))


def slug(name: str) -> str:
    out = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")[:40].strip("_")
    if not out:
        raise CardError(f"cannot make an id from the name {name!r}: give one with --id")
    return out


def to_persona(card: Card, persona_id: str, avatar: str | None) -> tuple[dict[str, Any], list[str]]:
    d = card.data
    notes: list[str] = []
    # One line: a name is a label on platforms and in prompts, never a place for more text.
    name = " ".join(d.name.split())
    if len(name) > 80:
        notes.append("name: cut to 80 characters")
        name = name[:80].rstrip()
    # V3: {{char}} stands for the nickname when there is one.
    char = " ".join((d.nickname or "").split()) or name
    system = _ORIGINAL.sub("", d.system_prompt)
    parts = [
        system,
        d.description,
        f"{char}'s personality: {d.personality.strip()}" if d.personality.strip() else "",
        f"Scenario: {d.scenario.strip()}" if d.scenario.strip() else "",
        d.post_history_instructions,
    ]
    parts = [resolve(p, char) for p in parts if p.strip()]
    prompt = parts[0] if len(parts) == 1 else "\n\n".join(p.strip() for p in parts)
    if not prompt.strip():
        notes.append("prompt: the card has no description, personality, scenario or system prompt")
        prompt = f"You are {char}."
    if len(prompt) > LONG_PROMPT:
        # Not an error, but every reply pays for it: worth a look before the fleet runs it.
        notes.append(f"prompt: {len(prompt)} characters (about {len(prompt) // 4} tokens on every reply)")
    out: dict[str, Any] = {"id": persona_id, "name": name}
    if avatar:
        out["avatar"] = avatar
    out["bio"] = _bio(resolve(d.description, char))
    out["prompt"] = prompt
    if d.first_mes.strip():
        # {{user}} stays: it is filled when the greeting is said, with whoever it answers.
        out["greeting"] = _CHAR.sub(lambda _: char, _COMMENT.sub("", d.first_mes))
    pairs, example_notes = parse_examples(d.mes_example, char, name)
    notes += example_notes
    if pairs:
        out["examples"] = [{"user": resolve(u, char), "reply": resolve(r, char)} for u, r in pairs]
    out["triggers"] = DEFAULT_TRIGGERS
    out["limits"] = DEFAULT_LIMITS
    info = {"creator": d.creator, "character_version": d.character_version, "creator_notes": d.creator_notes}
    card_info: dict[str, Any] = {k: v for k, v in info.items() if v.strip()}
    if d.tags:
        card_info["tags"] = list(d.tags)
    if card_info:
        out["card"] = card_info
    own = d.extensions.get("botfleet")
    notes += _restore(out, own)
    if not avatar and isinstance(own, dict) and str(own.get("avatar", "")).startswith("https://"):
        # An avatar URL a botfleet export kept: platforms fetch it, the import never does.
        out["avatar"] = own["avatar"]
    notes += _unmapped(card)
    left = sorted({m for p in (prompt, *(e["reply"] for e in out.get("examples", []))) for m in _OTHER.findall(p)})
    if left:
        notes.append(f"macros left as written: {', '.join(left[:5])}")
    return out, notes


def _bio(description: str) -> str:
    first = description.strip().split("\n", 1)[0]
    sentence = re.split(r"(?<=[.!?])\s", first, maxsplit=1)[0]
    return sentence if len(sentence) <= 160 else sentence[:159].rstrip() + "…"


def _restore(out: dict[str, Any], ext: Any) -> list[str]:
    """Settings a botfleet export kept in extensions.botfleet; each is validated as part of the
    persona, and one that does not validate is left out (the defaults stay)."""
    if not isinstance(ext, dict):
        return []
    notes: list[str] = []
    restored: list[str] = []
    for key in RESTORED:
        if key not in ext:
            continue
        value = ext[key]
        if key == "model" and isinstance(value, dict) and "name" in value:
            # A card must not pick which (paid) model answers: that is the operator's choice.
            notes.append("extensions.botfleet.model.name: not imported")
            value = {k: v for k, v in value.items() if k != "name"}
        try:
            Persona.model_validate({**out, key: value})
        except ValidationError:
            notes.append(f"extensions.botfleet.{key}: not valid, left out")
            continue
        out[key] = value
        restored.append(key)
    taken = [k for k in restored if k in ("triggers", "limits", "channels", "sponsor")]
    if taken:
        # Who a persona answers and how often is the operator's call: say which came from the card.
        notes.append(f"extensions.botfleet: {', '.join(taken)} taken from the card; review them")
    return notes


def _count(value: Any) -> int:
    return len(value) if isinstance(value, (list, dict)) else 1


def _unmapped(card: Card) -> list[str]:
    d = card.data
    notes = []
    if d.alternate_greetings:
        notes.append(f"alternate_greetings: {_count(d.alternate_greetings)} not used (only first_mes is)")
    if d.group_only_greetings:
        notes.append(f"group_only_greetings: {_count(d.group_only_greetings)} not used")
    if d.character_book:
        entries = d.character_book.get("entries") if isinstance(d.character_book, dict) else None
        notes.append(f"character_book: lorebook with {_count(entries)} entries not used")
    for key in sorted(k for k in d.extensions if k != "botfleet"):
        notes.append(f"extensions.{key}: not used")
    if d.creator_notes_multilingual:
        notes.append(f"creator_notes_multilingual: {_count(d.creator_notes_multilingual)} languages not kept")
    for asset in d.assets if isinstance(d.assets, list) else []:
        kind, name, uri = (
            str(asset.get(k, ""))[:60] if isinstance(asset, dict) else "" for k in ("type", "name", "uri")
        )
        if not (kind == "icon" and name == "main"):
            notes.append(f"assets: {kind or 'an asset'} {name or uri!r} not used")
        elif uri != "ccdefault:":
            # The card's own image is the avatar; an icon elsewhere (a URL, a CHARX file) is not fetched.
            notes.append(f"assets: main icon at {uri!r} not fetched")
    for key in ("source", "creation_date", "modification_date"):
        if getattr(d, key):
            notes.append(f"{key}: not kept")
    for key in sorted(d.model_extra or {}):
        notes.append(f"{key}: unknown field, not used")
    return notes
