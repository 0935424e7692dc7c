"""BotCommandScope: checking a scope, keying stored command lists, and the order a client resolves them in."""

from __future__ import annotations

import json
from typing import Any

from tests.fakes.telegram.models import ChatState, JSONDict, bad_request

# BotCommandScope types and the fields each one needs.
SCOPE_FIELDS: dict[str, tuple[str, ...]] = {
    "default": (),
    "all_private_chats": (),
    "all_group_chats": (),
    "all_chat_administrators": (),
    "chat": ("chat_id",),
    "chat_administrators": ("chat_id",),
    "chat_member": ("chat_id", "user_id"),
}


def scope_of(raw: Any) -> JSONDict:
    """A setMyCommands/getMyCommands scope, checked and reduced to the fields that identify it."""
    scope = raw or {"type": "default"}
    if not isinstance(scope, dict) or scope.get("type") not in SCOPE_FIELDS:
        raise bad_request("can't parse BotCommandScope JSON object")
    needed = SCOPE_FIELDS[scope["type"]]
    if any(scope.get(name) in (None, "") for name in needed):
        raise bad_request(f"bot command scope {scope['type']} needs {', '.join(needed)}")
    # Ids as numbers whether they came as JSON numbers or strings; "@channelname" stays a name.
    ids = {name: int(v) if str(v := scope[name]).lstrip("-").isdigit() else v for name in needed}
    return {"type": scope["type"], **ids}


def scope_key(scope: JSONDict, language: str) -> str:
    return f"{json.dumps(scope, sort_keys=True)}|{language}"


def menu_scopes(chat_id: int, group: ChatState | None, user_id: int | None) -> list[JSONDict]:
    """The scopes Telegram tries for a chat's command menu, most specific first."""
    if group is None:  # a private chat, whose id is the user's
        return [{"type": "chat", "chat_id": chat_id}, {"type": "all_private_chats"}, {"type": "default"}]
    admin = user_id is not None and (user_id in group.admins or user_id == group.creator)
    scopes: list[JSONDict] = []
    if user_id is not None:
        scopes.append({"type": "chat_member", "chat_id": chat_id, "user_id": user_id})
    if admin:
        scopes.append({"type": "chat_administrators", "chat_id": chat_id})
    scopes.append({"type": "chat", "chat_id": chat_id})
    if admin:
        scopes.append({"type": "all_chat_administrators"})
    return [*scopes, {"type": "all_group_chats"}, {"type": "default"}]
