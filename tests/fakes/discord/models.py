"""Wire constants, small payload helpers and the records the fake Discord keeps."""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiohttp import web

JsonDict = dict[str, Any]
IdLike = int | str | JsonDict
T = TypeVar("T")

DISCORD_EPOCH_MS = 1420070400000
API_PREFIX = "/api/v10"
MAX_CONTENT = 2000
MAX_WEBHOOKS_PER_CHANNEL = 15

# Channel types.
TEXT = 0
DM = 1
CATEGORY = 4
PUBLIC_THREAD = 11
PRIVATE_THREAD = 12
FORUM = 15
THREAD_TYPES = frozenset({10, PUBLIC_THREAD, PRIVATE_THREAD})

# Gateway intents that change what the fake delivers.
INTENT_GUILDS = 1 << 0
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_GUILD_MESSAGE_REACTIONS = 1 << 10
INTENT_DIRECT_MESSAGES = 1 << 12
INTENT_DIRECT_MESSAGE_REACTIONS = 1 << 13
INTENT_MESSAGE_CONTENT = 1 << 15

# Message flags.
FLAG_HAS_THREAD = 1 << 5
FLAG_EPHEMERAL = 1 << 6
FLAG_LOADING = 1 << 7

# Permission bits; @everyone gets what a fresh server gives, each bot's managed role a little more.
_P = {
    "create_instant_invite": 0,
    "add_reactions": 6,
    "view_channel": 10,
    "send_messages": 11,
    "manage_messages": 13,
    "embed_links": 14,
    "attach_files": 15,
    "read_message_history": 16,
    "mention_everyone": 17,
    "use_external_emojis": 18,
    "change_nickname": 26,
    "manage_webhooks": 29,
    "use_application_commands": 31,
    "manage_threads": 34,
    "create_public_threads": 35,
    "send_messages_in_threads": 38,
}
EVERYONE_PERMISSIONS = sum(
    1 << _P[name]
    for name in (
        "create_instant_invite",
        "add_reactions",
        "view_channel",
        "send_messages",
        "embed_links",
        "attach_files",
        "read_message_history",
        "use_external_emojis",
        "change_nickname",
        "use_application_commands",
        "create_public_threads",
        "send_messages_in_threads",
    )
)
BOT_ROLE_PERMISSIONS = EVERYONE_PERMISSIONS | sum(
    1 << _P[name] for name in ("manage_messages", "manage_webhooks", "manage_threads", "mention_everyone")
)

APP_OWNER: JsonDict = {
    "id": "1",
    "username": "app-owner",
    "global_name": None,
    "discriminator": "0",
    "avatar": None,
    "bot": False,
    "public_flags": 0,
    "flags": 0,
}

USER_MENTION = re.compile(r"<@!?(\d+)>")
ROLE_MENTION = re.compile(r"<@&(\d+)>")
COMMAND_NAME = re.compile(r"^[-_\w]{1,32}$")


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def to_id(value: IdLike) -> int:
    if isinstance(value, dict):
        return int(value["id"])
    return int(value)


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # Not web.json_response: it appends "; charset=utf-8" and discord.py then treats the body as text.
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    return web.Response(status=status, body=json.dumps(data).encode(), headers=all_headers)


def field_error(field_name: str, code: str, message: str) -> JsonDict:
    return {field_name: {"_errors": [{"code": code, "message": message}]}}


class ApiError(Exception):
    """Raised inside handlers; becomes Discord's error body ``{"code", "message", "errors"?}``."""

    def __init__(self, status: int, code: int, message: str, errors: JsonDict | None = None) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors

    def response(self) -> web.Response:
        body: JsonDict = {"message": self.message, "code": self.code}
        if self.errors is not None:
            body["errors"] = self.errors
        return json_response(body, self.status)


def invalid_form(errors: JsonDict) -> ApiError:
    return ApiError(400, 50035, "Invalid Form Body", errors)


@dataclass
class Call:
    """One REST request as the fake saw it."""

    method: str
    path: str  # relative to the API base, e.g. "/channels/1/messages"
    query: dict[str, str]
    json: Any  # the JSON body, or the parsed payload_json of a multipart body
    token: str | None  # the bot token from the Authorization header
    bot_id: int | None  # the bot that token belongs to, if any
    webhook_id: int | None = None  # set for webhook and interaction-webhook routes
    files: list[str] = field(default_factory=list)  # multipart file names
    status: int = 0


@dataclass
class Reaction:
    channel_id: int
    message_id: int
    emoji: str  # "👍" or "name:id" for a custom emoji, as in the URL
    user_id: int


@dataclass
class FakeInteraction:
    """An interaction the test sent to a bot and everything the bot answered."""

    id: int
    token: str
    application_id: int
    channel_id: int
    payload: JsonDict
    created_at: float  # loop time; callbacks later than FakeDiscord.interaction_timeout fail
    callbacks: list[JsonDict] = field(default_factory=list)  # callback bodies, in order
    original_message_id: int | None = None
    followup_ids: list[int] = field(default_factory=list)
    loading: bool = False  # deferred, and no follow-up or edit has replaced the "thinking" message yet

    @property
    def acknowledged(self) -> bool:
        return bool(self.callbacks)

    @property
    def callback_types(self) -> list[int]:
        return [int(c.get("type", 0)) for c in self.callbacks]


@dataclass
class Fault:
    method: str
    path: re.Pattern[str]
    status: int
    body: JsonDict
    headers: dict[str, str]
    times: int
    after: bool
    skip: int = 0


def default_session_start_limit() -> JsonDict:
    return {"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1}


@dataclass
class BotAccount:
    token: str
    user: JsonDict
    application: JsonDict
    # Served by GET /gateway/bot; every IDENTIFY takes one from "remaining", as on Discord.
    session_start_limit: JsonDict = field(default_factory=default_session_start_limit)
    # Served as "shards" by GET /gateway/bot; with require_sharding an IDENTIFY without a shard is
    # closed with 4011, as Discord does for a bot in more than 2,500 guilds.
    shards: int = 1
    require_sharding: bool = False


def shard_of(guild_id: int, num_shards: int) -> int:
    """The shard that receives a guild's events, by Discord's formula."""
    return (guild_id >> 22) % num_shards


@dataclass(frozen=True)
class Identify:
    """One IDENTIFY the gateway accepted: which bot, which shard (None: unsharded), when (monotonic)."""

    bot_id: int
    shard: tuple[int, int] | None
    at: float


@dataclass
class Session:
    """A gateway session; it outlives one websocket so a client can RESUME it."""

    session_id: str
    bot_id: int
    intents: int
    queue: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    history: list[tuple[int, str]] = field(default_factory=list)  # (seq, frame) for RESUME replays
    seq: int = 0
    ws: web.WebSocketResponse | None = None
    writer: asyncio.Task[None] | None = None
    dropped: bool = False  # closed by drop_connections, so kept for RESUME whatever the close code
    shard: tuple[int, int] | None = None  # [shard id, shard count] from IDENTIFY

    def owns(self, guild_id: int) -> bool:
        """Whether this session receives the guild's events (every guild when unsharded)."""
        return self.shard is None or shard_of(guild_id, self.shard[1]) == self.shard[0]

    @property
    def gets_dms(self) -> bool:
        # Discord sends direct messages to shard 0 only.
        return self.shard is None or self.shard[0] == 0

    def enqueue_dispatch(self, event: str, data: JsonDict) -> None:
        self.seq += 1
        # Serialised now: the stored dicts change later (edits, counters) and the frame must not.
        frame = json.dumps({"op": 0, "t": event, "s": self.seq, "d": data})
        self.history.append((self.seq, frame))
        self.queue.put_nowait(frame)
