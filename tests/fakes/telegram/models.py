"""Bot API constants, errors, and the records the fake Telegram keeps (bots, chats, calls, faults)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias, TypeVar

from telegram.constants import ChatAction, ReactionEmoji

JSONDict: TypeAlias = dict[str, Any]
ChatRef: TypeAlias = "int | Mapping[str, Any]"
UserRef: TypeAlias = "int | Mapping[str, Any]"
T = TypeVar("T")

MAX_TEXT_UTF16 = 4096
TELEGRAM_SERVICE_USER: JSONDict = {"id": 777000, "is_bot": False, "first_name": "Telegram"}
# Without allowed_updates Telegram sends every type except these opt-in ones.
OPT_IN_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
REACTION_EMOJI = frozenset(e.value for e in ReactionEmoji)
CHAT_ACTIONS = frozenset(a.value for a in ChatAction)
# Form fields are JSON text for non-strings, but these are always sent as plain strings: decoding
# them would turn a message text of "123" or "true" into a number or a bool.
_STRING_PARAMS = frozenset(
    {
        "text",
        "caption",
        "parse_mode",
        "action",
        "title",
        "description",
        "short_description",
        "name",
        "url",
        "emoji",
        "language_code",
        "callback_query_id",
        "inline_message_id",
        "business_connection_id",
        "message_effect_id",
        "secret_token",
        "ip_address",
        "query",
        "question",
        "explanation",
        "custom_title",
        "sticker",
        "photo",
        "document",
        "audio",
        "video",
        "voice",
    }
)
CONFLICT_OTHER_POLL = (
    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
)


class ApiError(Exception):
    """A Bot API error answer; raised inside method handlers, turned into JSON by the server."""

    def __init__(self, code: int, description: str, parameters: JSONDict | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.parameters = parameters

    def payload(self) -> JSONDict:
        body: JSONDict = {"ok": False, "error_code": self.code, "description": self.description}
        if self.parameters:
            body["parameters"] = self.parameters
        return body


def bad_request(reason: str) -> ApiError:
    return ApiError(400, f"Bad Request: {reason}")


@dataclass
class Call:
    """One HTTP request to the fake, with its form fields decoded back into Python values."""

    token: str
    bot_username: str | None  # None when the token is unknown
    method: str
    params: JSONDict
    ok: bool = True
    error_code: int | None = None
    description: str | None = None
    result: Any = None
    at: float = field(default_factory=time.monotonic)  # when the request arrived (pacing tests)


@dataclass
class SentMessage:
    """A message a bot sent; ``message`` is the stored dict, so later edits show up in it."""

    bot_username: str
    message: JSONDict
    deleted: bool = False

    @property
    def chat_id(self) -> int:
        return int(self.message["chat"]["id"])

    @property
    def message_id(self) -> int:
        return int(self.message["message_id"])

    @property
    def text(self) -> str | None:
        return self.message.get("text")

    @property
    def reply_to_message_id(self) -> int | None:
        reply = self.message.get("reply_to_message")
        return int(reply["message_id"]) if reply else None


@dataclass
class Fault:
    method: str
    chat_id: int | str | None
    bot: str | None
    error: ApiError


@dataclass(eq=False)
class Poll:
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    superseded: bool = False


@dataclass(eq=False)
class BotAccount:
    token: str
    user: JSONDict  # getMe answer, capabilities included
    bot_to_bot: bool
    pending: list[JSONDict] = field(default_factory=list)
    delivered: list[JSONDict] = field(default_factory=list)
    next_update_id: int = 1
    allowed_updates: list[str] = field(default_factory=list)
    poll: Poll | None = None
    webhook_url: str = ""
    commands: dict[str, list[JSONDict]] = field(default_factory=dict)

    @property
    def id(self) -> int:
        return int(self.user["id"])

    @property
    def username(self) -> str:
        return str(self.user["username"])

    @property
    def public(self) -> JSONDict:
        """The ``from`` of its messages: getMe without the capability flags."""
        return {k: self.user[k] for k in ("id", "is_bot", "first_name", "username")}


@dataclass(eq=False)
class ChatState:
    info: JSONDict
    members: set[int] = field(default_factory=set)
    admins: set[int] = field(default_factory=set)
    creator: int | None = None
    linked_chat_id: int | None = None
    kicked: set[int] = field(default_factory=set)
    last_bot_id: int | None = None

    @property
    def id(self) -> int:
        return int(self.info["id"])

    @property
    def type(self) -> str:
        return str(self.info["type"])


@dataclass
class Target:
    """Where a bot's request lands: a conversation key plus the chat dict for messages."""

    conv: tuple[int, int]
    chat: JSONDict
    group: ChatState | None


def decode_param(name: str, value: str) -> Any:
    if name in _STRING_PARAMS:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def as_int(value: Any, default: int) -> int:
    if value is None or value == "":
        return default
    return int(value)


def ref_id(ref: ChatRef | UserRef) -> int:
    return int(ref) if isinstance(ref, int) else int(ref["id"])
