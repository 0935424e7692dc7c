"""Events and actions as JSON: what a claim carries, so another process can finish answering a message
whose process died (bots.core.claims).

Unknown fields are ignored and missing ones take their defaults, so processes of neighbouring
versions can take over each other's claims.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

from bots.core.events import Action, Author, Command, Event, ImagePart, Message, Notice, React, Reply

_EVENTS: dict[str, type[Message] | type[Command]] = {"Message": Message, "Command": Command}
_ACTIONS: dict[str, type[Reply] | type[React] | type[Notice]] = {"Reply": Reply, "React": React, "Notice": Notice}


class BadPayload(ValueError):
    """A claim's payload that is not an event (and actions) this version understands."""


_NAMES: dict[type[Any], tuple[str, ...]] = {}


def _names(cls: type[Any]) -> tuple[str, ...]:
    # Every message of a shared fleet is written out for its claim: the field list is looked up once.
    names = _NAMES.get(cls)
    if names is None:
        names = _NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def dump(obj: Event | Action) -> dict[str, Any]:
    out: dict[str, Any] = {"type": type(obj).__name__}
    for name in _names(type(obj)):
        value = getattr(obj, name)
        if isinstance(value, Author):
            value = {n: getattr(value, n) for n in _names(Author)}
        elif isinstance(value, frozenset):
            value = sorted(value)
        elif name == "images":
            value = [part.to_dict() for part in value]
        out[name] = value
    return out


def _fields(cls: type[Any], raw: Mapping[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in raw.items() if k in names}


def load_event(raw: Mapping[str, Any]) -> Event:
    cls = _EVENTS.get(str(raw.get("type")))
    if cls is None:
        raise BadPayload(f"not an event: {raw.get('type')!r}")
    kw = _fields(cls, raw)
    try:
        kw["author"] = Author(**_fields(Author, kw["author"]))
        if "mentions" in kw:
            kw["mentions"] = frozenset(kw["mentions"])
        if "images" in kw:
            kw["images"] = tuple(ImagePart(**_fields(ImagePart, p)) for p in kw["images"])
        if "files" in kw:
            kw["files"] = tuple(kw["files"])
        return cls(**kw)
    except (KeyError, TypeError) as exc:
        raise BadPayload(str(exc)) from None


def load_action(raw: Mapping[str, Any]) -> Action:
    cls = _ACTIONS.get(str(raw.get("type")))
    if cls is None:
        raise BadPayload(f"not an action: {raw.get('type')!r}")
    try:
        return cls(**_fields(cls, raw))
    except TypeError as exc:
        raise BadPayload(str(exc)) from None


def encode_claim(event: Event, actions: Sequence[Action] | None = None) -> str:
    """An event and, once decided, the actions still to carry out (None: not decided yet)."""
    body = {"event": dump(event), "actions": None if actions is None else [dump(a) for a in actions]}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def decode_claim(payload: str | bytes) -> tuple[Event, list[Action] | None]:
    try:
        body = json.loads(payload)
        actions = body["actions"]
        return load_event(body["event"]), None if actions is None else [load_action(a) for a in actions]
    except (ValueError, KeyError, TypeError) as exc:
        raise BadPayload(str(exc)) from None
