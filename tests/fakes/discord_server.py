"""An in-process fake Discord (REST + gateway) that the real discord.py talks to.

Several bot accounts can connect at once from one event loop; humans are scripted by the test::

    async with FakeDiscord() as fake:
        fake.add_bot("host-token", "Host")
        guild = fake.add_guild("Test")
        general = fake.add_channel(guild, "general")
        alice = fake.add_user("alice")
        with point_discord_py_at(fake):
            client = discord.Client(intents=intents, guild_ready_timeout=0.05)
            task = asyncio.create_task(client.start("host-token"))
            await client.wait_until_ready()
            await fake.post_message(general, alice, "hello")
            await fake.wait_for(lambda: fake.messages(general, author=client.user.id))
            await client.close()
            await task

Ids in payloads are strings, as on the wire; every method that takes an id also takes an int or
the dict that the fake returned (``fake.messages(general)`` works as well as ``(general["id"])``).

Fidelity worth knowing before asserting on it:

- Every bot is a member of every guild. ``deny_channel`` only affects REST (403, code 50013): the
  gateway still shows full permissions, like a stale cache, so product code reaches the error path.
- A message's ``mentions`` lists only the users that ``allowed_mentions`` let through (plus the
  replied-to author when ``replied_user`` is set), as Discord does, so a test can assert "nobody
  was pinged" on ``fake.messages(...)[-1]["mentions"]``.
- Without the MESSAGE_CONTENT intent a bot receives other people's messages with empty content
  unless it is mentioned; without GUILD_MESSAGES it receives none.
- A ``nonce`` sent with ``enforce_nonce`` is deduplicated per author and channel, so discord.py's
  retries after a 5xx (see :meth:`FakeDiscord.fail_next`) cannot post twice.
- Direct messages (:meth:`FakeDiscord.post_dm`, ``POST /users/@me/channels``) live in one DM channel
  per bot and human (type 1, ``recipients`` is the human). Their events go only to that bot's sessions
  with the DIRECT_MESSAGES intent, with content whatever MESSAGE_CONTENT says (as Discord exempts DMs),
  and without CHANNEL_CREATE, as on Discord: discord.py builds the DMChannel from ``channel_id``.
  Other bots get 403 code 50001 on a DM channel; webhooks and threads there get 403 code 50003.
- After a deferred interaction response the first follow-up edits the "thinking" message instead
  of creating one (MESSAGE_UPDATE, not MESSAGE_CREATE), and callbacks later than
  ``interaction_timeout`` seconds get 404 code 10062, as on Discord.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Self, TypeVar

import discord.gateway
import discord.http
import yarl
from aiohttp import WSMsgType, web

from tests.fakes.polling import wait_for

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

_APP_OWNER: JsonDict = {
    "id": "1",
    "username": "app-owner",
    "global_name": None,
    "discriminator": "0",
    "avatar": None,
    "bot": False,
    "public_flags": 0,
    "flags": 0,
}

_USER_MENTION = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION = re.compile(r"<@&(\d+)>")
_COMMAND_NAME = re.compile(r"^[-_\w]{1,32}$")


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def _id(value: IdLike) -> int:
    if isinstance(value, dict):
        return int(value["id"])
    return int(value)


def _json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # Not web.json_response: it appends "; charset=utf-8" and discord.py then treats the body as text.
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    return web.Response(status=status, body=json.dumps(data).encode(), headers=all_headers)


def _field_error(field_name: str, code: str, message: str) -> JsonDict:
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
        return _json_response(body, self.status)


def _invalid_form(errors: JsonDict) -> ApiError:
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
class _Fault:
    method: str
    path: re.Pattern[str]
    status: int
    body: JsonDict
    headers: dict[str, str]
    times: int
    after: bool
    skip: int = 0


def _session_start_limit() -> JsonDict:
    return {"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1}


@dataclass
class _Bot:
    token: str
    user: JsonDict
    application: JsonDict
    # Served by GET /gateway/bot; every IDENTIFY takes one from "remaining", as on Discord.
    session_start_limit: JsonDict = field(default_factory=_session_start_limit)


@dataclass
class _Session:
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

    def enqueue_dispatch(self, event: str, data: JsonDict) -> None:
        self.seq += 1
        # Serialised now: the stored dicts change later (edits, counters) and the frame must not.
        frame = json.dumps({"op": 0, "t": event, "s": self.seq, "d": data})
        self.history.append((self.seq, frame))
        self.queue.put_nowait(frame)


class FakeDiscord:
    """Fake Discord REST API and gateway on 127.0.0.1, for real discord.py clients."""

    def __init__(self, *, heartbeat_interval_ms: int = 41250, interaction_timeout: float = 3.0) -> None:
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.interaction_timeout = interaction_timeout
        self.port = 0

        self.users: dict[int, JsonDict] = {}
        self.bots: dict[int, _Bot] = {}
        self.guilds: dict[int, JsonDict] = {}
        self.channels: dict[int, JsonDict] = {}  # threads and DM channels included
        self.webhooks: dict[int, JsonDict] = {}
        self.deleted_webhooks: set[int] = set()
        self.reactions: list[Reaction] = []
        self.calls: list[Call] = []
        self.denied: list[Call] = []  # bot requests refused by deny_channel
        self.commands: dict[tuple[int, int | None], list[JsonDict]] = {}  # (app id, guild id or None)
        self.command_syncs: dict[tuple[int, int | None], int] = {}  # bulk overwrites per scope
        self.interactions: dict[int, FakeInteraction] = {}
        self.deleted_message_ids: set[int] = set()
        self.unhandled: list[Call] = []  # requests to routes the fake does not implement

        self._tokens: dict[str, int] = {}
        self._messages: dict[int, JsonDict] = {}
        self._channel_messages: dict[int, list[int]] = {}
        self._dm_ids: dict[tuple[int, int], int] = {}  # (bot id, human id) -> DM channel id
        self._dm_bots: dict[int, int] = {}  # DM channel id -> the bot in it
        self._nonces: dict[tuple[int, int, str], int] = {}
        self._bot_roles: dict[tuple[int, int], int] = {}
        self._denials: set[tuple[int, int | None]] = set()
        self._gateway_refused: set[str] = set()
        self._faults: list[_Fault] = []
        self._sessions: dict[str, _Session] = {}
        self._writers: set[asyncio.Task[None]] = set()
        self._last_snowflake = 0
        self._runner: web.AppRunner | None = None

    # ----------------------------------------------------------------- lifecycle

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        """The value for ``discord.http.Route.BASE``."""
        return f"{self.base_url}{API_PREFIX}"

    @property
    def gateway_url(self) -> str:
        """The value for ``DiscordWebSocket.DEFAULT_GATEWAY`` (wrap it in ``yarl.URL``)."""
        return f"ws://127.0.0.1:{self.port}/gateway"

    async def start(self) -> None:
        app = web.Application(client_max_size=32 * 1024 * 1024)
        app.router.add_get("/gateway", self._gateway)
        self._add_routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        for session in list(self._sessions.values()):
            if session.ws is not None and not session.ws.closed:
                await session.ws.close(code=1001, message=b"fake Discord stopping")
        self._sessions.clear()
        for task in list(self._writers):
            task.cancel()
        await asyncio.gather(*self._writers, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ----------------------------------------------------------------- world model

    def _snowflake(self) -> int:
        # Real-looking snowflakes: discord.py derives created_at from them and webhook URLs need 17+ digits.
        candidate = (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
        self._last_snowflake = max(candidate, self._last_snowflake + 1)
        return self._last_snowflake

    def add_user(self, name: str, user_id: int | None = None) -> JsonDict:
        """A human account."""
        return self._new_user(name, user_id, bot=False)

    def _new_user(self, name: str, user_id: int | None, *, bot: bool) -> JsonDict:
        uid = user_id if user_id is not None else self._snowflake()
        user: JsonDict = {
            "id": str(uid),
            "username": name,
            "global_name": None if bot else name,
            "discriminator": "0",
            "avatar": None,
            "bot": bot,
            "public_flags": 0,
            "flags": 0,
        }
        self.users[uid] = user
        return user

    def add_bot(self, token: str, name: str, bot_id: int | None = None) -> JsonDict:
        """A bot account with its application (same id); returns the bot's user dict."""
        user = self._new_user(name, bot_id, bot=True)
        uid = int(user["id"])
        application: JsonDict = {
            "id": str(uid),
            "name": name,
            "icon": None,
            "description": "",
            "summary": "",
            "bot_public": True,
            "bot_require_code_grant": False,
            "verify_key": "0" * 64,
            "owner": _APP_OWNER,
            "team": None,
            "flags": 0,
            "bot": user,
            "interactions_endpoint_url": None,
            "redirect_uris": [],
            "tags": [],
        }
        self.bots[uid] = _Bot(token=token, user=user, application=application)
        self._tokens[token] = uid
        return user

    def add_guild(self, name: str, owner: IdLike | None = None) -> JsonDict:
        """A guild; every bot (present and future) is a member. Announced to connected bots."""
        gid = self._snowflake()
        guild: JsonDict = {"id": str(gid), "name": name, "owner_id": str(_id(owner)) if owner else None}
        self.guilds[gid] = guild
        for session in self._target_sessions():
            if session.intents & INTENT_GUILDS:
                # Without "unavailable" discord.py reads it as a join (on_guild_join), not an outage ending.
                payload = self._guild_create(gid, session.bot_id)
                del payload["unavailable"]
                session.enqueue_dispatch("GUILD_CREATE", payload)
        return guild

    def add_channel(
        self,
        guild: IdLike,
        name: str,
        type: int = TEXT,
        *,
        parent: IdLike | None = None,
        topic: str | None = None,
    ) -> JsonDict:
        """A guild channel (0 text, 15 forum, 4 category...). Announced to connected bots."""
        gid = _id(guild)
        if gid not in self.guilds:
            raise KeyError(f"unknown guild {gid}")
        cid = self._snowflake()
        position = sum(1 for c in self.channels.values() if c.get("guild_id") == str(gid))
        channel: JsonDict = {
            "id": str(cid),
            "type": type,
            "guild_id": str(gid),
            "name": name,
            "position": position,
            "permission_overwrites": [],
            "parent_id": str(_id(parent)) if parent is not None else None,
            "nsfw": False,
            "topic": topic,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "flags": 0,
        }
        if type == FORUM:
            channel.update(
                available_tags=[],
                default_reaction_emoji=None,
                default_sort_order=None,
                default_forum_layout=0,
                default_thread_rate_limit_per_user=0,
            )
        self.channels[cid] = channel
        self._channel_messages[cid] = []
        self._broadcast("CHANNEL_CREATE", channel, INTENT_GUILDS)
        return channel

    def deny_channel(self, channel_id: IdLike, bot_id: IdLike | None = None) -> None:
        """Refuse bot writes in a channel (and its threads) with 403 code 50013; None means every bot."""
        self._denials.add((_id(channel_id), _id(bot_id) if bot_id is not None else None))

    def allow_channel(self, channel_id: IdLike, bot_id: IdLike | None = None) -> None:
        self._denials.discard((_id(channel_id), _id(bot_id) if bot_id is not None else None))

    def dm_channel(self, bot: IdLike, user: IdLike) -> JsonDict:
        """The DM channel between a bot and a human, made on first use (type 1, ``recipients: [user]``)."""
        bot_id, uid = self._bot_id(bot), _id(user)
        if uid not in self.users:
            raise KeyError(f"unknown user {uid}")
        cid = self._dm_ids.get((bot_id, uid))
        if cid is not None:
            return self.channels[cid]
        cid = self._snowflake()
        channel: JsonDict = {
            "id": str(cid),
            "type": DM,
            "last_message_id": None,
            "recipients": [self.users[uid]],
            "flags": 0,
        }
        self.channels[cid] = channel
        self._channel_messages[cid] = []
        self._dm_ids[(bot_id, uid)] = cid
        self._dm_bots[cid] = bot_id
        return channel

    def set_session_start_limit(
        self,
        bot: IdLike,
        *,
        total: int = 1000,
        remaining: int | None = None,
        reset_after: int = 0,
        max_concurrency: int = 1,
    ) -> None:
        """What ``GET /gateway/bot`` says about a bot's IDENTIFY budget (``remaining`` defaults to
        ``total``); each IDENTIFY then takes one from ``remaining``, down to 0. The fake never refuses
        an IDENTIFY for want of budget (Discord resets the token; see :meth:`revoke_token`)."""
        left = total if remaining is None else remaining
        limit = {"total": total, "remaining": left, "reset_after": reset_after, "max_concurrency": max_concurrency}
        self.bots[self._bot_id(bot)].session_start_limit = limit

    def session_start_limit(self, bot: IdLike) -> JsonDict:
        return dict(self.bots[self._bot_id(bot)].session_start_limit)

    def revoke_token(self, token: str, *, rest: bool = True) -> None:
        """Invalidate a bot token: the gateway closes IDENTIFY with 4004, and with ``rest`` every REST
        call gets 401 (``rest=False`` refuses only the gateway, as with a token reset mid-connect)."""
        self._gateway_refused.add(token)
        if rest:
            self._tokens.pop(token, None)

    def delete_webhook(self, webhook_id: IdLike) -> None:
        """Delete a webhook behind the bots' backs: later executes get 404 code 10015."""
        wid = _id(webhook_id)
        self.webhooks.pop(wid, None)
        self.deleted_webhooks.add(wid)

    def fail_next(
        self,
        method: str,
        path_regex: str,
        status: int = 500,
        *,
        times: int = 1,
        code: int = 0,
        message: str | None = None,
        retry_after: float = 0.05,
        via: bool = True,
        after: bool = False,
        skip: int = 0,
    ) -> None:
        """Answer the next ``times`` matching requests with an error.

        ``path_regex`` is searched in the path relative to the API base. For 429 the body carries
        ``retry_after``, and a ``Via`` header unless ``via=False`` (discord.py retries a 429 only when
        that header is there, otherwise it assumes a Cloudflare ban and raises). With ``after=True`` the
        request is carried out first and only the answer is lost, as when Discord times out after
        posting. discord.py sleeps 1 s before retrying a 500, 502, 504 or 524. ``skip`` lets that many
        matching requests through first (the second part of a reply fails, say).
        """
        headers: dict[str, str] = {}
        if status == 429:
            body: JsonDict = {
                "message": message or "You are being rate limited.",
                "retry_after": retry_after,
                "global": False,
                "code": code,
            }
            headers["Retry-After"] = str(retry_after)
            if via:
                headers["Via"] = "1.1 google"
        else:
            body = {"message": message or f"{status}: fake failure", "code": code}
        self._faults.append(_Fault(method.upper(), re.compile(path_regex), status, body, headers, times, after, skip))

    # ----------------------------------------------------------------- queries for tests

    def calls_to(self, method: str, path_regex: str) -> list[Call]:
        """Recorded calls with this method whose path matches ``path_regex`` (re.search)."""
        pattern = re.compile(path_regex)
        return [c for c in self.calls if c.method == method.upper() and pattern.search(c.path)]

    def messages(self, channel_id: IdLike, *, author: IdLike | None = None) -> list[JsonDict]:
        """Stored, undeleted messages of a channel or thread, oldest first.

        Ephemeral interaction answers (flag 64) are included, though no bot and no history call sees them.
        """
        ids = self._channel_messages.get(_id(channel_id), [])
        result = [self._messages[m] for m in ids if m not in self.deleted_message_ids]
        if author is not None:
            author_id = str(_id(author))
            result = [m for m in result if m["author"]["id"] == author_id]
        return result

    def message(self, message_id: IdLike) -> JsonDict:
        return self._messages[_id(message_id)]

    def threads(self, parent_id: IdLike) -> list[JsonDict]:
        pid = str(_id(parent_id))
        return [c for c in self.channels.values() if c["type"] in THREAD_TYPES and c["parent_id"] == pid]

    def channel_webhooks(self, channel_id: IdLike) -> list[JsonDict]:
        cid = str(_id(channel_id))
        return [w for w in self.webhooks.values() if w["channel_id"] == cid]

    def connected_bot_ids(self) -> set[int]:
        """Bots with an identified, open gateway connection."""
        return {s.bot_id for s in self._live_sessions()}

    async def wait_for(
        self,
        predicate: Callable[[], T],
        timeout: float = 5.0,  # noqa: ASYNC109 - a polling deadline, not a cancel scope
        interval: float = 0.01,
    ) -> T:
        """Poll ``predicate`` until it returns something truthy, and return that."""
        return await wait_for(predicate, timeout, interval)

    # ----------------------------------------------------------------- human actions

    async def post_message(
        self,
        channel_id: IdLike,
        author: IdLike,
        content: str,
        *,
        mentions: list[JsonDict] | None = None,
        reply_to: IdLike | None = None,
        embeds: list[JsonDict] | None = None,
    ) -> JsonDict:
        """A human posts; every connected bot gets MESSAGE_CREATE.

        ``mentions=None`` parses ``<@id>`` from the content and, for a reply, pings the replied-to
        author as Discord's client does by default; a list is taken as the exact mentions.
        """
        channel = self._channel(_id(channel_id))
        user = self.users[_id(author)]
        reference = None
        if reply_to is not None:
            reference = {"message_id": str(_id(reply_to)), "channel_id": channel["id"]}
        body: JsonDict = {"content": content, "embeds": embeds or []}
        if reference is not None:
            body["message_reference"] = reference
        message = self._create_message(channel, user, body)
        if mentions is not None:
            message["mentions"] = [self.users[_id(m)] for m in mentions]
        self._dispatch_message("MESSAGE_CREATE", message)
        return message

    async def post_dm(self, bot: IdLike, user: IdLike, content: str, *, reply_to: IdLike | None = None) -> JsonDict:
        """A human DMs a bot (token, id or user dict): only that bot's sessions get MESSAGE_CREATE."""
        return await self.post_message(self.dm_channel(bot, user), user, content, reply_to=reply_to)

    async def create_forum_post(
        self, forum_channel_id: IdLike, author: IdLike, title: str, content: str
    ) -> tuple[JsonDict, JsonDict]:
        """A human opens a forum post: THREAD_CREATE, then MESSAGE_CREATE inside the new thread."""
        forum = self._channel(_id(forum_channel_id))
        if forum["type"] != FORUM:
            raise ValueError("not a forum channel")
        user = self.users[_id(author)]
        return self._create_thread_with_message(forum, user, title, {"content": content})

    async def post_reaction(self, channel_id: IdLike, message_id: IdLike, user: IdLike, emoji: str) -> Reaction:
        """A human reacts; connected bots get MESSAGE_REACTION_ADD."""
        message = self._message_in(_id(channel_id), _id(message_id))
        return self._add_reaction(message, _id(user), emoji)

    async def send_interaction(
        self,
        bot: IdLike,
        channel_id: IdLike,
        user: IdLike,
        command_name: str,
        options: list[JsonDict] | None = None,
        type: int = 2,
        *,
        resolved: JsonDict | None = None,
    ) -> FakeInteraction:
        """A human runs a slash command (type 2) or types into an option (type 4, autocomplete).

        ``bot`` is the bot's token, id or user dict. The command id comes from the commands that bot
        synced (guild ones first), as Discord routes it; an unknown name still goes out with a fresh id.
        """
        bot_id = self._bot_id(bot)
        sessions = [s for s in self._target_sessions() if s.bot_id == bot_id]
        if not sessions:
            raise RuntimeError(f"bot {bot_id} has no gateway session")
        channel = self._channel(_id(channel_id))
        gid = int(channel["guild_id"])
        human = self.users[_id(user)]
        command = self._find_command(bot_id, gid, command_name)
        data: JsonDict = {
            "id": command["id"] if command else str(self._snowflake()),
            "name": command_name,
            "type": 1,
            "options": options or [],
        }
        if command is not None and command.get("guild_id"):
            data["guild_id"] = command["guild_id"]
        if resolved is not None:
            data["resolved"] = resolved
        iid = self._snowflake()
        token = "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(48)
        payload: JsonDict = {
            "id": str(iid),
            "application_id": str(bot_id),
            "type": type,
            "data": data,
            "guild_id": str(gid),
            "guild": {"id": str(gid), "locale": "en-US", "features": []},
            "channel_id": channel["id"],
            "channel": channel,
            "member": {**self._member(human, gid), "permissions": str(EVERYONE_PERMISSIONS)},
            "token": token,
            "version": 1,
            "app_permissions": str(BOT_ROLE_PERMISSIONS),
            "locale": "en-US",
            "guild_locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"0": str(gid)},
            "context": 0,
            "attachment_size_limit": 10 * 1024 * 1024,
        }
        interaction = FakeInteraction(
            id=iid,
            token=token,
            application_id=bot_id,
            channel_id=int(channel["id"]),
            payload=payload,
            created_at=asyncio.get_running_loop().time(),
        )
        self.interactions[iid] = interaction
        # Discord hands an interaction to one session of the bot, not to each.
        sessions[-1].enqueue_dispatch("INTERACTION_CREATE", payload)
        return interaction

    async def drop_connections(self, bot: IdLike, code: int = 4000) -> None:
        """Close a bot's gateway sockets as a network blip would; discord.py then RESUMEs."""
        bot_id = self._bot_id(bot)
        for session in list(self._sessions.values()):
            if session.bot_id == bot_id and session.ws is not None and not session.ws.closed:
                session.dropped = True
                await session.ws.close(code=code, message=b"fake drop")

    def _bot_id(self, bot: IdLike) -> int:
        if isinstance(bot, str) and bot in self._tokens:
            return self._tokens[bot]
        bot_id = _id(bot)
        if bot_id not in self.bots:
            raise KeyError(f"unknown bot {bot!r}")
        return bot_id

    # ----------------------------------------------------------------- payload builders

    def _channel(self, cid: int) -> JsonDict:
        try:
            return self.channels[cid]
        except KeyError:
            raise ApiError(404, 10003, "Unknown Channel") from None

    def _guild_channel_ids(self, channel: JsonDict) -> set[int]:
        """The channel and, for a thread, its parent: deny rules on either apply."""
        ids = {int(channel["id"])}
        if channel["type"] in THREAD_TYPES and channel.get("parent_id"):
            ids.add(int(channel["parent_id"]))
        return ids

    def _bot_role_id(self, gid: int, bot_id: int) -> int:
        key = (gid, bot_id)
        if key not in self._bot_roles:
            self._bot_roles[key] = self._snowflake()
        return self._bot_roles[key]

    def _roles(self, gid: int) -> list[JsonDict]:
        everyone = {
            "id": str(gid),
            "name": "@everyone",
            "permissions": str(EVERYONE_PERMISSIONS),
            "position": 0,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "managed": False,
            "mentionable": False,
            "flags": 0,
        }
        roles = [everyone]
        for position, bot_id in enumerate(self.bots, start=1):
            roles.append(
                {
                    **everyone,
                    "id": str(self._bot_role_id(gid, bot_id)),
                    "name": self.users[bot_id]["username"],
                    "permissions": str(BOT_ROLE_PERMISSIONS),
                    "position": position,
                    "managed": True,
                    "tags": {"bot_id": str(bot_id)},
                }
            )
        return roles

    def _member(self, user: JsonDict, gid: int, *, with_user: bool = True) -> JsonDict:
        uid = int(user["id"])
        roles = [str(self._bot_role_id(gid, uid))] if uid in self.bots else []
        member: JsonDict = {
            "roles": roles,
            "joined_at": "2024-01-01T00:00:00+00:00",
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "nick": None,
            "avatar": None,
            "premium_since": None,
            "communication_disabled_until": None,
        }
        if with_user:
            member["user"] = user
        return member

    def _guild_create(self, gid: int, bot_id: int) -> JsonDict:
        guild = self.guilds[gid]
        channels = [c for c in self.channels.values() if c.get("guild_id") == str(gid)]
        members = [self._member(u, gid) for u in self.users.values()]
        return {
            **guild,
            "unavailable": False,
            "icon": None,
            "splash": None,
            "banner": None,
            "discovery_splash": None,
            "description": None,
            "features": [],
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "preferred_locale": "en-US",
            "system_channel_id": None,
            "afk_channel_id": None,
            "afk_timeout": 300,
            "application_id": None,
            "joined_at": "2024-01-01T00:00:00+00:00",
            "large": False,
            "member_count": len(members),
            "roles": self._roles(gid),
            "emojis": [],
            "stickers": [],
            "channels": [c for c in channels if c["type"] not in THREAD_TYPES],
            "threads": [c for c in channels if c["type"] in THREAD_TYPES],
            "members": members,
            "presences": [],
            "voice_states": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
        }

    def _ready(self, session: _Session) -> JsonDict:
        bot = self.bots[session.bot_id]
        return {
            "v": 10,
            "user": {**bot.user, "verified": True, "mfa_enabled": False, "email": None},
            "guilds": [{"id": str(gid), "unavailable": True} for gid in self.guilds],
            "session_id": session.session_id,
            "resume_gateway_url": self.gateway_url,
            "application": {"id": bot.application["id"], "flags": bot.application["flags"]},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "geo_ordered_rtc_regions": [],
            "session_type": "normal",
            "shard": [0, 1],
        }

    def _webhook_author(self, webhook: JsonDict, body: JsonDict) -> JsonDict:
        return {
            "id": webhook["id"],
            "username": body.get("username") or webhook["name"],
            "avatar": None,
            "discriminator": "0000",
            "global_name": None,
            "bot": True,
            "public_flags": 0,
            "flags": 0,
        }

    # ----------------------------------------------------------------- messages

    def _message_in(self, cid: int, mid: int) -> JsonDict:
        message = self._messages.get(mid)
        if message is None or mid in self.deleted_message_ids or message["channel_id"] != str(cid):
            raise ApiError(404, 10008, "Unknown Message")
        return message

    def _validate_body(self, body: JsonDict, *, files: list[str] | None = None, creating: bool = True) -> None:
        content = body.get("content")
        if content is not None and not isinstance(content, str):
            content = str(content)
        if content is not None and len(content) > MAX_CONTENT:
            raise _invalid_form(
                _field_error("content", "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_CONTENT} or fewer in length.")
            )
        if creating and not (
            content
            or body.get("embeds")
            or files
            or body.get("sticker_ids")
            or body.get("components")
            or body.get("poll")
        ):
            raise ApiError(400, 50006, "Cannot send an empty message")

    def _resolve_mentions(
        self, content: str, allowed: JsonDict | None, referenced: JsonDict | None
    ) -> tuple[list[JsonDict], list[str], bool]:
        """Mentions that actually ping: Discord filters parsed mentions through allowed_mentions."""
        parse: list[str] = ["users", "roles", "everyone"] if allowed is None else list(allowed.get("parse") or [])
        allowed_users = {str(u) for u in (allowed or {}).get("users") or []}
        allowed_roles = {str(r) for r in (allowed or {}).get("roles") or []}
        replied_user = True if allowed is None else bool(allowed.get("replied_user", False))

        user_ids: list[str] = []
        for uid in _USER_MENTION.findall(content):
            if ("users" in parse or uid in allowed_users) and int(uid) in self.users and uid not in user_ids:
                user_ids.append(uid)
        if referenced is not None and replied_user and "webhook_id" not in referenced:
            # A webhook's author is not a user, so replying to it pings nobody.
            if referenced["author"]["id"] not in user_ids:
                user_ids.append(referenced["author"]["id"])
        roles = [r for r in _ROLE_MENTION.findall(content) if "roles" in parse or r in allowed_roles]
        everyone = "everyone" in parse and ("@everyone" in content or "@here" in content)
        return [self.users[int(u)] for u in user_ids], roles, everyone

    def _create_message(
        self,
        channel: JsonDict,
        author: JsonDict,
        body: JsonDict,
        *,
        files: list[str] | None = None,
        webhook_id: str | None = None,
        message_id: int | None = None,
        extra: JsonDict | None = None,
        validate: bool = True,
    ) -> JsonDict:
        """Validate, store and return a message; the caller dispatches it."""
        if validate:
            self._validate_body(body, files=files)
        cid = int(channel["id"])
        if channel["type"] in (FORUM, CATEGORY, 2, 13):
            raise ApiError(400, 50008, "Cannot send messages in a non-text channel")

        nonce = body.get("nonce")
        if nonce is not None and body.get("enforce_nonce"):
            key = (int(author["id"]), cid, str(nonce))
            if key in self._nonces:
                return self._messages[self._nonces[key]]

        reference = body.get("message_reference")
        referenced: JsonDict | None = None
        if reference and reference.get("message_id"):
            ref_channel = int(reference.get("channel_id") or cid)
            try:
                referenced = self._message_in(ref_channel, int(reference["message_id"]))
            except ApiError:
                if reference.get("fail_if_not_exists", True):
                    raise _invalid_form(
                        _field_error("message_reference", "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message")
                    ) from None

        content = "" if body.get("content") is None else str(body["content"])
        mentions, roles, everyone = self._resolve_mentions(content, body.get("allowed_mentions"), referenced)
        mid = message_id if message_id is not None else self._snowflake()
        message: JsonDict = {
            "id": str(mid),
            "type": 19 if referenced is not None else 0,
            "channel_id": str(cid),
            "author": author,
            "content": content,
            "timestamp": _now_iso(),
            "edited_timestamp": None,
            "tts": bool(body.get("tts", False)),
            "mention_everyone": everyone,
            "mentions": mentions,
            "mention_roles": roles,
            "attachments": [self._attachment(name) for name in files or []],
            "embeds": body.get("embeds") or [],
            "components": body.get("components") or [],
            "pinned": False,
            "flags": int(body.get("flags") or 0),
        }
        if nonce is not None:
            message["nonce"] = nonce
        if webhook_id is not None:
            message["webhook_id"] = webhook_id
        if referenced is not None:
            message["message_reference"] = {
                "type": 0,
                "message_id": referenced["id"],
                "channel_id": referenced["channel_id"],
                "guild_id": channel.get("guild_id"),
            }
            message["referenced_message"] = {k: v for k, v in referenced.items() if k != "referenced_message"}
        if channel["type"] in THREAD_TYPES:
            message["position"] = channel["total_message_sent"]
            channel["message_count"] += 1
            channel["total_message_sent"] += 1
        if extra:
            message.update(extra)

        self._messages[mid] = message
        self._channel_messages.setdefault(cid, []).append(mid)
        channel["last_message_id"] = str(mid)
        if nonce is not None and body.get("enforce_nonce"):
            self._nonces[(int(author["id"]), cid, str(nonce))] = mid
        return message

    def _attachment(self, filename: str) -> JsonDict:
        aid = self._snowflake()
        url = f"{self.base_url}/attachments/{aid}/{filename}"
        return {"id": str(aid), "filename": filename, "size": 0, "url": url, "proxy_url": url}

    def _edit_message(self, message: JsonDict, body: JsonDict) -> JsonDict:
        self._validate_body(body, creating=False)
        if "content" in body:
            message["content"] = "" if body["content"] is None else str(body["content"])
            # Edits re-parse the content's mentions; without allowed_mentions in the edit they all ping.
            mentions, roles, everyone = self._resolve_mentions(message["content"], body.get("allowed_mentions"), None)
            # Whether the replied-to author was pinged is settled when the reply is sent.
            reply_author = (message.get("referenced_message") or {}).get("author", {}).get("id")
            if any(u["id"] == reply_author for u in message["mentions"]):
                mentions += [u for u in message["mentions"] if u["id"] == reply_author and u not in mentions]
            message.update(mentions=mentions, mention_roles=roles, mention_everyone=everyone)
        for key in ("embeds", "components"):
            if key in body:
                message[key] = body[key] or []
        if "flags" in body and body["flags"] is not None:
            # Only SUPPRESS_EMBEDS can be toggled by an edit; keep the rest.
            message["flags"] = (message["flags"] & ~(1 << 2)) | (int(body["flags"]) & (1 << 2))
        message["edited_timestamp"] = _now_iso()
        return message

    def _message_for_session(self, message: JsonDict, session: _Session) -> JsonDict:
        channel = self.channels.get(int(message["channel_id"]))
        payload = dict(message)
        if channel is not None and channel.get("guild_id"):
            gid = int(channel["guild_id"])
            payload["guild_id"] = channel["guild_id"]
            if "webhook_id" not in message:
                payload["member"] = self._member(message["author"], gid, with_user=False)
            payload["mentions"] = [{**u, "member": self._member(u, gid, with_user=False)} for u in message["mentions"]]
        own = message["author"]["id"] == str(session.bot_id)
        mentioned = any(u["id"] == str(session.bot_id) for u in message["mentions"])
        in_dm = int(message["channel_id"]) in self._dm_bots
        if not (session.intents & INTENT_MESSAGE_CONTENT) and not own and not mentioned and not in_dm:
            payload.update(content="", embeds=[], attachments=[], components=[])
        return payload

    def _dispatch_message(self, event: str, message: JsonDict) -> None:
        if message["flags"] & FLAG_EPHEMERAL:
            return
        for session in self._channel_sessions(
            int(message["channel_id"]), INTENT_GUILD_MESSAGES, INTENT_DIRECT_MESSAGES
        ):
            session.enqueue_dispatch(event, self._message_for_session(message, session))

    def _add_reaction(self, message: JsonDict, user_id: int, emoji: str) -> Reaction:
        cid = int(message["channel_id"])
        reaction = Reaction(cid, int(message["id"]), emoji, user_id)
        if reaction in self.reactions:
            return reaction
        self.reactions.append(reaction)
        name, _, emoji_id = emoji.partition(":")
        data: JsonDict = {
            "user_id": str(user_id),
            "channel_id": str(cid),
            "message_id": message["id"],
            "message_author_id": message["author"]["id"],
            "emoji": {"id": emoji_id or None, "name": name},
            "burst": False,
            "type": 0,
        }
        channel = self.channels.get(cid)
        if channel is not None and channel.get("guild_id"):
            data["guild_id"] = channel["guild_id"]
            data["member"] = self._member(self.users[user_id], int(channel["guild_id"]))
        for session in self._channel_sessions(cid, INTENT_GUILD_MESSAGE_REACTIONS, INTENT_DIRECT_MESSAGE_REACTIONS):
            session.enqueue_dispatch("MESSAGE_REACTION_ADD", data)
        return reaction

    # ----------------------------------------------------------------- threads

    def _new_thread(self, parent: JsonDict, owner_id: int, name: str, thread_id: int | None, type: int) -> JsonDict:
        tid = thread_id if thread_id is not None else self._snowflake()
        now = _now_iso()
        thread: JsonDict = {
            "id": str(tid),
            "type": type,
            "guild_id": parent["guild_id"],
            "parent_id": parent["id"],
            "owner_id": str(owner_id),
            "name": name,
            "last_message_id": None,
            "message_count": 0,
            "member_count": 1,
            "total_message_sent": 0,
            "rate_limit_per_user": 0,
            "flags": 0,
            "applied_tags": [],
            "thread_metadata": {
                "archived": False,
                "auto_archive_duration": 1440,
                "archive_timestamp": now,
                "locked": False,
                "create_timestamp": now,
            },
        }
        self.channels[tid] = thread
        self._channel_messages.setdefault(tid, [])
        return thread

    def _announce_thread(self, thread: JsonDict) -> None:
        self._broadcast("THREAD_CREATE", {**thread, "newly_created": True}, INTENT_GUILDS)

    def _create_thread_with_message(
        self,
        forum: JsonDict,
        author: JsonDict,
        title: str,
        body: JsonDict,
        *,
        files: list[str] | None = None,
        webhook_id: str | None = None,
    ) -> tuple[JsonDict, JsonDict]:
        self._validate_body(body, files=files)
        # A forum post's starter message has the thread's id, as on Discord.
        thread = self._new_thread(forum, int(author["id"]), title, None, PUBLIC_THREAD)
        thread["applied_tags"] = [str(t) for t in body.get("applied_tags") or []]
        message = self._create_message(
            thread, author, body, files=files, webhook_id=webhook_id, message_id=int(thread["id"])
        )
        forum["last_message_id"] = thread["id"]
        self._announce_thread(thread)
        self._dispatch_message("MESSAGE_CREATE", message)
        return thread, message

    # ----------------------------------------------------------------- gateway

    def _live_sessions(self) -> list[_Session]:
        return [s for s in self._sessions.values() if s.ws is not None and not s.ws.closed]

    def _target_sessions(self) -> list[_Session]:
        # Sessions whose socket dropped still collect events, so a RESUME can replay them.
        return list(self._sessions.values())

    def _channel_sessions(self, cid: int, guild_intent: int, dm_intent: int) -> list[_Session]:
        """Who hears about a channel's events: everyone with the guild intent, or for a DM only its bot."""
        dm_bot = self._dm_bots.get(cid)
        if dm_bot is None:
            return [s for s in self._target_sessions() if s.intents & guild_intent]
        return [s for s in self._target_sessions() if s.bot_id == dm_bot and s.intents & dm_intent]

    def _broadcast(self, event: str, data: JsonDict, intent: int) -> None:
        for session in self._target_sessions():
            if session.intents & intent:
                session.enqueue_dispatch(event, data)

    async def _writer(self, session: _Session, ws: web.WebSocketResponse) -> None:
        # One writer per socket keeps frames in order; sync code only enqueues.
        with contextlib.suppress(ConnectionError, RuntimeError):
            while not ws.closed:
                await ws.send_str(await session.queue.get())

    def _attach(self, session: _Session, ws: web.WebSocketResponse) -> None:
        if session.writer is not None:
            # A writer left from the dropped socket would steal frames from the resumed one.
            session.writer.cancel()
        session.ws = ws
        session.writer = asyncio.create_task(self._writer(session, ws))
        self._writers.add(session.writer)
        session.writer.add_done_callback(self._writers.discard)

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": self.heartbeat_interval_ms}}))
        session: _Session | None = None
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                frame = json.loads(msg.data)
                op, data = frame.get("op"), frame.get("d")
                if op == 1:
                    if session is None:
                        # Before IDENTIFY there is no session queue, and nothing else to order against.
                        await ws.send_str(json.dumps({"op": 11}))
                    else:
                        session.queue.put_nowait(json.dumps({"op": 11}))
                elif op == 2:
                    session = self._identify(ws, data)
                    if session is None:
                        await ws.close(code=4004, message=b"Authentication failed.")
                        break
                elif op == 6:
                    session = self._resume(ws, data)
                    if session is None:
                        await ws.send_str(json.dumps({"op": 9, "d": False}))
                elif op == 8 and session is not None:
                    self._answer_member_request(session, data)
        finally:
            if session is not None and session.ws is ws:
                if session.writer is not None:
                    session.writer.cancel()
                    session.writer = None
                session.ws = None
                # A client that closes cleanly ends its session; any other close may RESUME it.
                if not session.dropped and ws.close_code in (1000, 1001, None):
                    self._sessions.pop(session.session_id, None)
        return ws

    def _identify(self, ws: web.WebSocketResponse, data: JsonDict) -> _Session | None:
        token = str(data.get("token", ""))
        bot_id = self._tokens.get(token)
        if bot_id is None or token in self._gateway_refused:
            return None
        limit = self.bots[bot_id].session_start_limit
        limit["remaining"] = max(0, limit["remaining"] - 1)
        session = _Session(session_id=secrets.token_hex(16), bot_id=bot_id, intents=int(data.get("intents", 0)))
        self._sessions[session.session_id] = session
        self._attach(session, ws)
        # READY and every GUILD_CREATE are queued in one synchronous step, so no test event can
        # reach the client before it knows the guilds.
        session.enqueue_dispatch("READY", self._ready(session))
        if session.intents & INTENT_GUILDS:
            for gid in self.guilds:
                session.enqueue_dispatch("GUILD_CREATE", self._guild_create(gid, bot_id))
        return session

    def _resume(self, ws: web.WebSocketResponse, data: JsonDict) -> _Session | None:
        session = self._sessions.get(str(data.get("session_id")))
        token = str(data.get("token"))
        if session is None or self._tokens.get(token) != session.bot_id or token in self._gateway_refused:
            return None
        if session.ws is not None and not session.ws.closed:
            return None
        self._attach(session, ws)
        session.dropped = False
        # The history holds everything the queue holds, so replay from it and drop the queue.
        while not session.queue.empty():
            session.queue.get_nowait()
        last_seen = int(data.get("seq") or 0)
        for seq, frame in session.history:
            if seq > last_seen:
                session.queue.put_nowait(frame)
        session.enqueue_dispatch("RESUMED", {})
        return session

    def _answer_member_request(self, session: _Session, data: JsonDict) -> None:
        guild_ids = data.get("guild_id")
        for gid in guild_ids if isinstance(guild_ids, list) else [guild_ids]:
            if gid is None or int(gid) not in self.guilds:
                continue
            members = [self._member(u, int(gid)) for u in self.users.values()]
            session.enqueue_dispatch(
                "GUILD_MEMBERS_CHUNK",
                {
                    "guild_id": str(gid),
                    "members": members,
                    "chunk_index": 0,
                    "chunk_count": 1,
                    "nonce": data.get("nonce"),
                },
            )

    # ----------------------------------------------------------------- REST plumbing

    def _add_routes(self, app: web.Application) -> None:
        routes: list[tuple[str, str, Callable[[web.Request, Call], Awaitable[web.StreamResponse]], bool]] = [
            ("GET", "/gateway", self._get_gateway, False),
            ("GET", "/gateway/bot", self._get_gateway_bot, True),
            ("GET", "/users/@me", self._get_me, True),
            ("POST", "/users/@me/channels", self._create_dm, True),
            ("GET", "/users/{user_id}", self._get_user, True),
            ("GET", "/oauth2/applications/@me", self._get_application, True),
            ("GET", "/applications/@me", self._get_application, True),
            ("GET", "/channels/{channel_id}", self._get_channel, True),
            ("GET", "/guilds/{guild_id}/channels", self._get_guild_channels, True),
            ("GET", "/guilds/{guild_id}/members/{user_id}", self._get_member, True),
            ("GET", "/channels/{channel_id}/messages", self._get_messages, True),
            ("POST", "/channels/{channel_id}/messages", self._post_message, True),
            ("GET", "/channels/{channel_id}/messages/{message_id}", self._get_message, True),
            ("PATCH", "/channels/{channel_id}/messages/{message_id}", self._patch_message, True),
            ("DELETE", "/channels/{channel_id}/messages/{message_id}", self._delete_message, True),
            ("POST", "/channels/{channel_id}/typing", self._typing, True),
            (
                "PUT",
                "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me",
                self._put_reaction,
                True,
            ),
            (
                "DELETE",
                "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me",
                self._delete_reaction,
                True,
            ),
            ("POST", "/channels/{channel_id}/messages/{message_id}/threads", self._thread_from_message, True),
            ("POST", "/channels/{channel_id}/threads", self._post_thread, True),
            ("GET", "/channels/{channel_id}/webhooks", self._get_channel_webhooks, True),
            ("POST", "/channels/{channel_id}/webhooks", self._post_webhook, True),
            ("GET", "/guilds/{guild_id}/webhooks", self._get_guild_webhooks, True),
            ("GET", "/webhooks/{webhook_id}", self._get_webhook, True),
            ("DELETE", "/webhooks/{webhook_id}", self._delete_webhook_route, True),
            ("GET", "/webhooks/{webhook_id}/{webhook_token}", self._get_webhook_with_token, False),
            ("DELETE", "/webhooks/{webhook_id}/{webhook_token}", self._delete_webhook_with_token, False),
            ("POST", "/webhooks/{webhook_id}/{webhook_token}", self._execute_webhook, False),
            (
                "GET",
                "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}",
                self._get_wh_message,
                False,
            ),
            (
                "PATCH",
                "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}",
                self._patch_wh_message,
                False,
            ),
            (
                "DELETE",
                "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}",
                self._delete_wh_message,
                False,
            ),
            ("PUT", "/applications/{application_id}/commands", self._put_commands, True),
            ("GET", "/applications/{application_id}/commands", self._get_commands, True),
            ("POST", "/applications/{application_id}/commands", self._post_command, True),
            ("PUT", "/applications/{application_id}/guilds/{guild_id}/commands", self._put_commands, True),
            ("GET", "/applications/{application_id}/guilds/{guild_id}/commands", self._get_commands, True),
            ("POST", "/applications/{application_id}/guilds/{guild_id}/commands", self._post_command, True),
            ("POST", "/interactions/{interaction_id}/{interaction_token}/callback", self._callback, False),
        ]
        for method, path, handler, auth in routes:
            app.router.add_route(method, API_PREFIX + path, self._wrap(handler, auth))
        # Last, so it only sees what nothing above handles: recorded, so a test can spot the gap.
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self._wrap(self._unknown_route, False))

    def _wrap(
        self, handler: Callable[[web.Request, Call], Awaitable[web.StreamResponse]], auth: bool
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            call = await self._record(request)
            response = await self._respond(request, call, handler, auth)
            call.status = response.status
            return response

        return wrapped

    async def _record(self, request: web.Request) -> Call:
        body: Any = None
        files: list[str] = []
        content_type = request.content_type
        if content_type == "application/json":
            raw = await request.read()
            body = json.loads(raw) if raw else None
        elif content_type.startswith("multipart/"):
            form = await request.post()
            for name, value in form.items():
                if name == "payload_json" and isinstance(value, str):
                    body = json.loads(value)
                elif isinstance(value, web.FileField):
                    files.append(value.filename)
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bot ") if header.startswith("Bot ") else None
        webhook_id = request.match_info.get("webhook_id")
        call = Call(
            method=request.method,
            path=request.path.removeprefix(API_PREFIX),
            query=dict(request.query),
            json=body,
            token=token,
            bot_id=self._tokens.get(token) if token else None,
            webhook_id=int(webhook_id) if webhook_id and webhook_id.isdigit() else None,
            files=files,
        )
        self.calls.append(call)
        return call

    def _take_fault(self, call: Call) -> _Fault | None:
        for fault in self._faults:
            if fault.method == call.method and fault.path.search(call.path):
                if fault.skip > 0:
                    fault.skip -= 1
                    return None
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    async def _respond(
        self,
        request: web.Request,
        call: Call,
        handler: Callable[[web.Request, Call], Awaitable[web.StreamResponse]],
        auth: bool,
    ) -> web.StreamResponse:
        fault = self._take_fault(call)
        if fault is not None and not fault.after:
            return _json_response(fault.body, fault.status, fault.headers)
        try:
            if auth and call.bot_id is None:
                raise ApiError(401, 0, "401: Unauthorized")
            response = await handler(request, call)
        except ApiError as error:
            if error.status == 403 and error.code == 50013:
                self.denied.append(call)
            response = error.response()
        if fault is not None:
            return _json_response(fault.body, fault.status, fault.headers)
        return response

    def _check_allowed(self, call: Call, channel: JsonDict) -> None:
        self._check_visible(call, channel)
        for cid in self._guild_channel_ids(channel):
            if (cid, None) in self._denials or (cid, call.bot_id) in self._denials:
                raise ApiError(403, 50013, "Missing Permissions")

    def _check_visible(self, call: Call, channel: JsonDict) -> None:
        dm_bot = self._dm_bots.get(int(channel["id"]))
        if dm_bot is not None and dm_bot != call.bot_id:
            raise ApiError(403, 50001, "Missing Access")

    @staticmethod
    def _no_dm(channel: JsonDict) -> None:
        if channel["type"] == DM:
            raise ApiError(403, 50003, "Cannot execute action on a DM channel")

    @staticmethod
    def _body(call: Call) -> JsonDict:
        return call.json if isinstance(call.json, dict) else {}

    def _bot_user(self, call: Call) -> JsonDict:
        assert call.bot_id is not None
        return self.bots[call.bot_id].user

    async def _unknown_route(self, request: web.Request, call: Call) -> web.Response:
        self.unhandled.append(call)
        raise ApiError(404, 0, f"404: Not Found (the fake has no {call.method} {call.path})")

    # ----------------------------------------------------------------- REST: identity

    async def _get_gateway(self, request: web.Request, call: Call) -> web.Response:
        return _json_response({"url": self.gateway_url})

    async def _get_gateway_bot(self, request: web.Request, call: Call) -> web.Response:
        assert call.bot_id is not None  # the route requires a bot token
        limit = self.bots[call.bot_id].session_start_limit
        return _json_response({"url": self.gateway_url, "shards": 1, "session_start_limit": limit})

    async def _get_me(self, request: web.Request, call: Call) -> web.Response:
        user = self._bot_user(call)
        return _json_response({**user, "verified": True, "mfa_enabled": False, "email": None, "locale": "en-US"})

    async def _get_user(self, request: web.Request, call: Call) -> web.Response:
        user = self.users.get(int(request.match_info["user_id"]))
        if user is None:
            raise ApiError(404, 10013, "Unknown User")
        return _json_response(user)

    async def _get_application(self, request: web.Request, call: Call) -> web.Response:
        assert call.bot_id is not None
        return _json_response(self.bots[call.bot_id].application)

    async def _get_channel(self, request: web.Request, call: Call) -> web.Response:
        channel = self._channel(int(request.match_info["channel_id"]))
        self._check_visible(call, channel)
        return _json_response(channel)

    async def _create_dm(self, request: web.Request, call: Call) -> web.Response:
        raw = self._body(call).get("recipient_id")
        if raw is None or not str(raw).isdigit():
            raise _invalid_form(_field_error("recipient_id", "BASE_TYPE_REQUIRED", "This field is required"))
        if int(raw) not in self.users:
            raise ApiError(400, 50033, "Invalid Recipient(s)")
        assert call.bot_id is not None
        return _json_response(self.dm_channel(call.bot_id, int(raw)))

    async def _get_guild_channels(self, request: web.Request, call: Call) -> web.Response:
        gid = request.match_info["guild_id"]
        if int(gid) not in self.guilds:
            raise ApiError(404, 10004, "Unknown Guild")
        channels = [c for c in self.channels.values() if c.get("guild_id") == gid and c["type"] not in THREAD_TYPES]
        return _json_response(channels)

    async def _get_member(self, request: web.Request, call: Call) -> web.Response:
        gid = int(request.match_info["guild_id"])
        user = self.users.get(int(request.match_info["user_id"]))
        if gid not in self.guilds:
            raise ApiError(404, 10004, "Unknown Guild")
        if user is None:
            raise ApiError(404, 10007, "Unknown Member")
        return _json_response(self._member(user, gid))

    # ----------------------------------------------------------------- REST: messages

    async def _get_messages(self, request: web.Request, call: Call) -> web.Response:
        cid = int(request.match_info["channel_id"])
        self._check_visible(call, self._channel(cid))
        limit = min(int(request.query.get("limit", 50)), 100)
        messages = [m for m in self.messages(cid) if not m["flags"] & FLAG_EPHEMERAL]
        if "before" in request.query:
            messages = [m for m in messages if int(m["id"]) < int(request.query["before"])]
        if "after" in request.query:
            after = [m for m in messages if int(m["id"]) > int(request.query["after"])]
            return _json_response(list(reversed(after[:limit])))
        return _json_response(list(reversed(messages[-limit:])))

    async def _get_message(self, request: web.Request, call: Call) -> web.Response:
        self._check_visible(call, self._channel(int(request.match_info["channel_id"])))
        message = self._message_in(int(request.match_info["channel_id"]), int(request.match_info["message_id"]))
        return _json_response(message)

    async def _post_message(self, request: web.Request, call: Call) -> web.Response:
        channel = self._channel(int(request.match_info["channel_id"]))
        self._check_allowed(call, channel)
        if channel["type"] == DM and any(u["bot"] for u in channel["recipients"]):
            raise ApiError(403, 50007, "Cannot send messages to this user")
        message = self._create_message(channel, self._bot_user(call), self._body(call), files=call.files)
        self._dispatch_message("MESSAGE_CREATE", message)
        return _json_response(message)

    async def _patch_message(self, request: web.Request, call: Call) -> web.Response:
        channel = self._channel(int(request.match_info["channel_id"]))
        self._check_visible(call, channel)
        message = self._message_in(int(channel["id"]), int(request.match_info["message_id"]))
        if message["author"]["id"] != str(call.bot_id):
            raise ApiError(403, 50005, "Cannot edit a message authored by another user")
        self._edit_message(message, self._body(call))
        self._dispatch_message("MESSAGE_UPDATE", message)
        return _json_response(message)

    async def _delete_message(self, request: web.Request, call: Call) -> web.Response:
        channel = self._channel(int(request.match_info["channel_id"]))
        self._check_visible(call, channel)
        message = self._message_in(int(channel["id"]), int(request.match_info["message_id"]))
        if message["author"]["id"] != str(call.bot_id):
            self._check_allowed(call, channel)
        self._delete(message)
        return web.Response(status=204)

    def _delete(self, message: JsonDict) -> None:
        self.deleted_message_ids.add(int(message["id"]))
        channel = self.channels.get(int(message["channel_id"]))
        data = {"id": message["id"], "channel_id": message["channel_id"]}
        if channel is not None and channel.get("guild_id"):
            data["guild_id"] = channel["guild_id"]
        if not message["flags"] & FLAG_EPHEMERAL:
            for session in self._channel_sessions(
                int(message["channel_id"]), INTENT_GUILD_MESSAGES, INTENT_DIRECT_MESSAGES
            ):
                session.enqueue_dispatch("MESSAGE_DELETE", data)

    async def _typing(self, request: web.Request, call: Call) -> web.Response:
        channel = self._channel(int(request.match_info["channel_id"]))
        self._check_allowed(call, channel)
        return web.Response(status=204)

    async def _put_reaction(self, request: web.Request, call: Call) -> web.Response:
        channel = self._channel(int(request.match_info["channel_id"]))
        message = self._message_in(int(channel["id"]), int(request.match_info["message_id"]))
        self._check_allowed(call, channel)
        assert call.bot_id is not None
        self._add_reaction(message, call.bot_id, request.match_info["emoji"])
        return web.Response(status=204)

    async def _delete_reaction(self, request: web.Request, call: Call) -> web.Response:
        cid, mid = int(request.match_info["channel_id"]), int(request.match_info["message_id"])
        self._message_in(cid, mid)
        assert call.bot_id is not None
        reaction = Reaction(cid, mid, request.match_info["emoji"], call.bot_id)
        if reaction in self.reactions:
            self.reactions.remove(reaction)
        return web.Response(status=204)

    # ----------------------------------------------------------------- REST: threads

    async def _thread_from_message(self, request: web.Request, call: Call) -> web.Response:
        channel = self._channel(int(request.match_info["channel_id"]))
        message = self._message_in(int(channel["id"]), int(request.match_info["message_id"]))
        self._check_allowed(call, channel)
        self._no_dm(channel)
        if int(message["id"]) in self.channels:
            raise ApiError(400, 160004, "A thread has already been created for this message")
        body = self._body(call)
        assert call.bot_id is not None
        # A thread started from a message takes the message's id, as on Discord.
        thread = self._new_thread(channel, call.bot_id, str(body.get("name", "thread")), int(message["id"]), 11)
        if body.get("auto_archive_duration"):
            thread["thread_metadata"]["auto_archive_duration"] = body["auto_archive_duration"]
        message["flags"] |= FLAG_HAS_THREAD
        message["thread"] = thread
        self._announce_thread(thread)
        return _json_response(thread)

    async def _post_thread(self, request: web.Request, call: Call) -> web.Response:
        channel = self._channel(int(request.match_info["channel_id"]))
        self._check_allowed(call, channel)
        self._no_dm(channel)
        body = self._body(call)
        name = str(body.get("name", "thread"))
        author = self._bot_user(call)
        if channel["type"] == FORUM:
            message_body = dict(body.get("message") or {})
            if body.get("applied_tags"):
                message_body["applied_tags"] = body["applied_tags"]
            thread, message = self._create_thread_with_message(channel, author, name, message_body, files=call.files)
            return _json_response({**thread, "message": message})
        thread = self._new_thread(channel, int(author["id"]), name, None, int(body.get("type") or PRIVATE_THREAD))
        self._announce_thread(thread)
        return _json_response(thread)

    # ----------------------------------------------------------------- REST: webhooks

    async def _get_channel_webhooks(self, request: web.Request, call: Call) -> web.Response:
        channel = self._channel(int(request.match_info["channel_id"]))
        self._check_allowed(call, channel)
        self._no_dm(channel)
        return _json_response(self.channel_webhooks(channel["id"]))

    async def _get_guild_webhooks(self, request: web.Request, call: Call) -> web.Response:
        gid = request.match_info["guild_id"]
        return _json_response([w for w in self.webhooks.values() if w["guild_id"] == gid])

    async def _post_webhook(self, request: web.Request, call: Call) -> web.Response:
        channel = self._channel(int(request.match_info["channel_id"]))
        self._check_allowed(call, channel)
        self._no_dm(channel)
        if channel["type"] in THREAD_TYPES or channel["type"] == CATEGORY:
            raise ApiError(400, 50008, "Cannot execute action on this channel type")
        body = self._body(call)
        name = str(body.get("name") or "")
        self._check_webhook_name(name, "name")
        if len(self.channel_webhooks(channel["id"])) >= MAX_WEBHOOKS_PER_CHANNEL:
            raise ApiError(400, 30007, "Maximum number of webhooks reached (15)")
        wid = self._snowflake()
        token = secrets.token_urlsafe(51)
        webhook = {
            "id": str(wid),
            "type": 1,
            "guild_id": channel["guild_id"],
            "channel_id": channel["id"],
            "name": name,
            "avatar": None,
            "token": token,
            "application_id": str(call.bot_id),
            "user": self._bot_user(call),
            "url": f"https://discord.com/api/webhooks/{wid}/{token}",
        }
        self.webhooks[wid] = webhook
        return _json_response(webhook)

    @staticmethod
    def _check_webhook_name(name: str, field_name: str) -> None:
        lowered = name.lower()
        if not 1 <= len(name) <= 80:
            raise _invalid_form(_field_error(field_name, "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 80 in length."))
        for banned in ("clyde", "discord"):
            if banned in lowered:
                raise _invalid_form(
                    _field_error(field_name, "USERNAME_INVALID_CONTAINS", f'Username cannot contain "{banned}"')
                )

    def _webhook(self, request: web.Request, *, token: bool) -> JsonDict:
        wid = int(request.match_info["webhook_id"])
        webhook = self.webhooks.get(wid)
        if webhook is None:
            raise ApiError(404, 10015, "Unknown Webhook")
        if token and request.match_info["webhook_token"] != webhook["token"]:
            raise ApiError(401, 50027, "Invalid Webhook Token")
        return webhook

    async def _get_webhook(self, request: web.Request, call: Call) -> web.Response:
        return _json_response(self._webhook(request, token=False))

    async def _get_webhook_with_token(self, request: web.Request, call: Call) -> web.Response:
        webhook = self._webhook(request, token=True)
        return _json_response({k: v for k, v in webhook.items() if k != "user"})

    async def _delete_webhook_route(self, request: web.Request, call: Call) -> web.Response:
        self.delete_webhook(self._webhook(request, token=False)["id"])
        return web.Response(status=204)

    async def _delete_webhook_with_token(self, request: web.Request, call: Call) -> web.Response:
        self.delete_webhook(self._webhook(request, token=True)["id"])
        return web.Response(status=204)

    def _interaction_by_token(self, request: web.Request) -> FakeInteraction | None:
        token = request.match_info.get("webhook_token") or request.match_info.get("interaction_token")
        for interaction in self.interactions.values():
            if interaction.token == token and str(interaction.application_id) == request.match_info.get(
                "webhook_id", str(interaction.application_id)
            ):
                return interaction
        return None

    async def _execute_webhook(self, request: web.Request, call: Call) -> web.Response:
        interaction = self._interaction_by_token(request)
        if interaction is not None:
            return await self._followup(interaction, call)
        webhook = self._webhook(request, token=True)
        body = self._body(call)
        if body.get("username") is not None:
            self._check_webhook_name(str(body["username"]), "username")
        channel = self._channel(int(webhook["channel_id"]))
        author = self._webhook_author(webhook, body)
        thread_id = call.query.get("thread_id")
        if thread_id:
            target = self.channels.get(int(thread_id))
            if target is None or target.get("parent_id") != channel["id"]:
                raise ApiError(404, 10003, "Unknown Channel")
            channel = target
        elif channel["type"] == FORUM:
            if not body.get("thread_name"):
                raise ApiError(400, 220001, "Webhooks posted to forum channels must have a thread_name or thread_id")
            _, message = self._create_thread_with_message(
                channel, author, str(body["thread_name"]), body, files=call.files, webhook_id=webhook["id"]
            )
            return self._webhook_answer(call, message)
        message = self._create_message(channel, author, body, files=call.files, webhook_id=webhook["id"])
        self._dispatch_message("MESSAGE_CREATE", message)
        return self._webhook_answer(call, message)

    @staticmethod
    def _webhook_answer(call: Call, message: JsonDict) -> web.Response:
        if call.query.get("wait") in ("1", "true", "True"):
            return _json_response(message)
        return web.Response(status=204)

    def _wh_message(self, request: web.Request, call: Call) -> tuple[JsonDict, FakeInteraction | None]:
        interaction = self._interaction_by_token(request)
        raw_id = request.match_info["message_id"]
        if interaction is not None:
            mid = interaction.original_message_id if raw_id == "@original" else int(raw_id)
            if mid is None or (mid != interaction.original_message_id and mid not in interaction.followup_ids):
                raise ApiError(404, 10008, "Unknown Message")
        else:
            webhook = self._webhook(request, token=True)
            if raw_id == "@original":
                raise ApiError(404, 10008, "Unknown Message")
            mid = int(raw_id)
            stored = self._messages.get(mid)
            if stored is None or stored.get("webhook_id") != webhook["id"]:
                raise ApiError(404, 10008, "Unknown Message")
        message = self._messages.get(mid)
        if message is None or mid in self.deleted_message_ids:
            raise ApiError(404, 10008, "Unknown Message")
        return message, interaction

    async def _get_wh_message(self, request: web.Request, call: Call) -> web.Response:
        message, _ = self._wh_message(request, call)
        return _json_response(message)

    async def _patch_wh_message(self, request: web.Request, call: Call) -> web.Response:
        message, interaction = self._wh_message(request, call)
        was_loading = bool(message["flags"] & FLAG_LOADING)
        self._edit_message(message, self._body(call))
        if was_loading:
            message["flags"] &= ~FLAG_LOADING
            if interaction is not None:
                interaction.loading = False
        self._dispatch_message("MESSAGE_UPDATE", message)
        return _json_response(message)

    async def _delete_wh_message(self, request: web.Request, call: Call) -> web.Response:
        message, interaction = self._wh_message(request, call)
        self._delete(message)
        if interaction is not None and int(message["id"]) == interaction.original_message_id:
            # A deleted "thinking" message is gone: the next follow-up is a message of its own.
            interaction.loading = False
        return web.Response(status=204)

    # ----------------------------------------------------------------- REST: application commands

    def _app_scope(self, request: web.Request, call: Call) -> tuple[int, int | None]:
        app_id = int(request.match_info["application_id"])
        if app_id != call.bot_id:
            raise ApiError(403, 20012, "You are not authorized to perform this action on this application")
        raw_gid = request.match_info.get("guild_id")
        if raw_gid is not None and int(raw_gid) not in self.guilds:
            raise ApiError(404, 10004, "Unknown Guild")
        return app_id, int(raw_gid) if raw_gid is not None else None

    def _make_command(self, app_id: int, gid: int | None, body: JsonDict, existing: list[JsonDict]) -> JsonDict:
        name = str(body.get("name", ""))
        ctype = int(body.get("type") or 1)
        if ctype == 1 and (not _COMMAND_NAME.match(name) or name != name.lower()):
            raise _invalid_form(_field_error("name", "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid"))
        description = str(body.get("description", ""))
        if ctype == 1 and not 1 <= len(description) <= 100:
            raise _invalid_form(
                _field_error("description", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
            )
        previous = next((c for c in existing if c["name"] == name and c["type"] == ctype), None)
        command: JsonDict = {
            "options": [],
            "default_member_permissions": None,
            "dm_permission": True,
            "nsfw": False,
            "contexts": None,
            "integration_types": [0],
            **body,
            "id": previous["id"] if previous else str(self._snowflake()),
            "application_id": str(app_id),
            "version": str(self._snowflake()),
            "type": ctype,
            "name": name,
            "description": description,
        }
        if gid is not None:
            command["guild_id"] = str(gid)
        return command

    async def _put_commands(self, request: web.Request, call: Call) -> web.Response:
        scope = self._app_scope(request, call)
        body = call.json if isinstance(call.json, list) else []
        existing = self.commands.get(scope, [])
        commands = [self._make_command(scope[0], scope[1], c, existing) for c in body]
        keys = [(c["name"], c["type"]) for c in commands]
        if len(keys) != len(set(keys)):
            raise _invalid_form(_field_error("_errors", "APPLICATION_COMMANDS_DUPLICATE_NAME", "Duplicate name"))
        self.commands[scope] = commands
        self.command_syncs[scope] = self.command_syncs.get(scope, 0) + 1
        return _json_response(commands)

    async def _get_commands(self, request: web.Request, call: Call) -> web.Response:
        return _json_response(self.commands.get(self._app_scope(request, call), []))

    async def _post_command(self, request: web.Request, call: Call) -> web.Response:
        scope = self._app_scope(request, call)
        existing = self.commands.setdefault(scope, [])
        command = self._make_command(scope[0], scope[1], self._body(call), existing)
        existing[:] = [c for c in existing if c["id"] != command["id"]] + [command]
        return _json_response(command, 201)

    def _find_command(self, app_id: int, gid: int, name: str) -> JsonDict | None:
        for scope in ((app_id, gid), (app_id, None)):
            for command in self.commands.get(scope, []):
                if command["name"] == name:
                    return command
        return None

    # ----------------------------------------------------------------- REST: interactions

    async def _callback(self, request: web.Request, call: Call) -> web.Response:
        interaction = self.interactions.get(int(request.match_info["interaction_id"]))
        if interaction is None or interaction.token != request.match_info["interaction_token"]:
            raise ApiError(404, 10062, "Unknown interaction")
        if interaction.acknowledged:
            raise ApiError(400, 40060, "Interaction has already been acknowledged.")
        if asyncio.get_running_loop().time() - interaction.created_at > self.interaction_timeout:
            raise ApiError(404, 10062, "Unknown interaction")
        body = self._body(call)
        interaction.callbacks.append(body)
        ctype = int(body.get("type", 0))
        data = body.get("data") or {}
        flags = int(data.get("flags") or 0)
        message: JsonDict | None = None
        if ctype in (4, 5):
            if ctype == 5:
                data = {"content": "", "flags": FLAG_LOADING | (flags & FLAG_EPHEMERAL)}
                interaction.loading = True
            message = self._interaction_message(interaction, data, allow_empty=ctype == 5)
            interaction.original_message_id = int(message["id"])
            self._dispatch_message("MESSAGE_CREATE", message)
        elif ctype == 7:
            target = interaction.payload.get("message")
            if target is not None and int(target["id"]) in self._messages:
                message = self._edit_message(self._messages[int(target["id"])], data)
                self._dispatch_message("MESSAGE_UPDATE", message)
        answer: JsonDict = {
            "interaction": {
                "id": str(interaction.id),
                "type": interaction.payload["type"],
                "activity_instance_id": None,
                "response_message_id": message["id"] if message else None,
                "response_message_loading": ctype == 5,
                "response_message_ephemeral": bool(message and message["flags"] & FLAG_EPHEMERAL),
            },
        }
        if ctype in (4, 5, 6, 7, 9):
            answer["resource"] = {"type": ctype}
            if message is not None:
                answer["resource"]["message"] = message
        return _json_response(answer)

    def _interaction_message(
        self, interaction: FakeInteraction, data: JsonDict, *, allow_empty: bool = False
    ) -> JsonDict:
        channel = self._channel(interaction.channel_id)
        bot_user = self.bots[interaction.application_id].user
        human = interaction.payload["member"]["user"]
        extra = {
            "application_id": str(interaction.application_id),
            "interaction_metadata": {
                "id": str(interaction.id),
                "type": interaction.payload["type"],
                "user": human,
                "authorizing_integration_owners": interaction.payload["authorizing_integration_owners"],
                "name": interaction.payload["data"]["name"],
            },
            "type": 20,
        }
        # The deferred "thinking" placeholder has no content, which a normal send would refuse.
        return self._create_message(
            channel,
            bot_user,
            data,
            webhook_id=str(interaction.application_id),
            extra=extra,
            validate=not allow_empty,
        )

    async def _followup(self, interaction: FakeInteraction, call: Call) -> web.Response:
        if not interaction.acknowledged:
            raise ApiError(404, 10015, "Unknown Webhook")
        body = self._body(call)
        if interaction.loading and interaction.original_message_id is not None:
            # Discord turns the deferred "thinking" message into the first follow-up.
            message = self._messages[interaction.original_message_id]
            self._validate_body(body, files=call.files)
            self._edit_message(message, body)
            message["flags"] &= ~FLAG_LOADING
            interaction.loading = False
            self._dispatch_message("MESSAGE_UPDATE", message)
            return _json_response(message)
        message = self._interaction_message(interaction, body)
        message["type"] = 0
        interaction.followup_ids.append(int(message["id"]))
        self._dispatch_message("MESSAGE_CREATE", message)
        return _json_response(message)


@contextlib.contextmanager
def point_discord_py_at(fake: FakeDiscord) -> Iterator[None]:
    """Point discord.py's process-wide REST base and gateway at ``fake``, and restore them after.

    The product does the same from its config: ``Route.BASE = api_base`` and
    ``DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)`` (a yarl.URL, not a str: discord.py
    calls ``.with_query`` on it).
    """
    old = (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
    discord.http.Route.BASE = fake.api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)
    try:
        yield
    finally:
        discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old
