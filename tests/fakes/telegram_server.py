"""An in-process fake of the Telegram Bot API for real python-telegram-bot Applications.

Several PTB ``Application`` objects poll it at once from one event loop::

    async with FakeTelegram() as fake:
        fake.add_bot("1001:test-token-alpha", "alpha_bot", "Alpha")
        app = ApplicationBuilder().token("1001:test-token-alpha").base_url(fake.base_url).build()
        ...
        await fake.user_says(group, alice, "@alpha_bot hello")

The server keeps a small world (users, bots, supergroups, channels with a linked discussion
group) and routes injected human messages the way Telegram does, because the product's turn-taking
depends on who sees what:

* Bots never receive messages written by other bots (unless a bot has ``bot_to_bot`` on, and then
  only ``/cmd@thatbot`` and direct replies to it).
* Bots that read everything (privacy mode off, or admin of the group) get every human message.
* Privacy-mode bots get commands (``/cmd`` for everyone, ``/cmd@thisbot`` for this bot only),
  ``@username`` / ``text_mention`` mentions, and replies to their own messages. A reply to a
  privacy-mode bot goes to that bot alone among privacy-mode bots, as the Bot FAQ says
  ("replies have the highest priority").
* A DM goes only to the bot it was sent to.

Assumptions where Telegram's documentation is silent or contradicts practice:

* Bare ``/cmd`` reaches every privacy-mode bot (``general_commands="all"``). The Bot FAQ says only
  "the last bot to send a message to the group" gets it; ``general_commands="last_bot"`` models that.
* The automatic forward of a channel post into the discussion group is authored by the channel
  (``from`` is the 777000 "Telegram" service user), so it follows the human rules: bots that read
  everything get it, privacy-mode bots only when it mentions or commands them.
* Anything a bot wrote, including its channel posts and their automatic forwards, reaches no other
  bot; that is the conservative reading of "bots will not be able to see messages from other bots
  regardless of mode".
* HTML: Telegram itself lets a bare ``&`` through as a literal, but its documentation says it must
  be escaped and an unescaped ``&amp;`` in user text silently turns into ``&``. With
  ``html_strict=True`` (the default) a bare ``&`` is a 400, so escaping bugs surface in tests.
  Other errors copy TDLib's messages.
* Markdown parse modes are accepted and not validated.

Public surface: ``start/stop`` (or ``async with``), ``base_url``, ``base_file_url``; world:
``add_bot``, ``add_user``, ``add_group``, ``add_channel``, ``add_member``; humans: ``user_says``,
``user_dms``, ``channel_post``, ``user_presses_button``; faults: ``fail_next``, ``block_chat``;
inspection: ``calls``, ``calls_to``, ``sent``, ``history``, ``delivered``, ``reactions_on``,
``commands_of``, ``menu_for``, ``wait_for``.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Self, TypeAlias, TypeVar

from aiohttp import web
from telegram.constants import ChatAction, ReactionEmoji

from tests.fakes.polling import wait_for

JSONDict: TypeAlias = dict[str, Any]
ChatRef: TypeAlias = "int | Mapping[str, Any]"
UserRef: TypeAlias = "int | Mapping[str, Any]"
T = TypeVar("T")

MAX_TEXT_UTF16 = 4096
TELEGRAM_SERVICE_USER: JSONDict = {"id": 777000, "is_bot": False, "first_name": "Telegram"}
# Without allowed_updates Telegram sends every type except these opt-in ones.
_OPT_IN_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
_REACTION_EMOJI = frozenset(e.value for e in ReactionEmoji)
_CHAT_ACTIONS = frozenset(a.value for a in ChatAction)
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
_CONFLICT_OTHER_POLL = (
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
class _Fault:
    method: str
    chat_id: int | str | None
    bot: str | None
    error: ApiError


@dataclass(eq=False)
class _Poll:
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    superseded: bool = False


@dataclass(eq=False)
class _Bot:
    token: str
    user: JSONDict  # getMe answer, capabilities included
    bot_to_bot: bool
    pending: list[JSONDict] = field(default_factory=list)
    delivered: list[JSONDict] = field(default_factory=list)
    next_update_id: int = 1
    allowed_updates: list[str] = field(default_factory=list)
    poll: _Poll | None = None
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
class _Chat:
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
class _Target:
    """Where a bot's request lands: a conversation key plus the chat dict for messages."""

    conv: tuple[int, int]
    chat: JSONDict
    group: _Chat | None


# --- text, entities, HTML -------------------------------------------------------------------------


def utf16_len(text: str) -> int:
    """Entity offsets and the 4096 limit count UTF-16 code units, so emoji count twice."""
    return len(text.encode("utf-16-le")) // 2


_COMMAND_RE = re.compile(r"(?<![\w/@<>])/([A-Za-z0-9_]{1,64})(?:@([A-Za-z0-9_]{3,32}))?(?![\w/@<>])")
_MENTION_RE = re.compile(r"(?<![\w@])@([A-Za-z0-9_]{3,32})(?![\w@])")
# Auto-detection skips text already covered by these: Telegram finds no mentions inside code.
_OPAQUE_ENTITIES = frozenset({"code", "pre", "text_link", "text_mention", "mention", "bot_command", "url", "email"})


def auto_entities(text: str, existing: Iterable[JSONDict] = ()) -> list[JSONDict]:
    """``bot_command`` and ``mention`` entities as Telegram's server would add them."""
    taken = [(e["offset"], e["offset"] + e["length"]) for e in existing if e.get("type") in _OPAQUE_ENTITIES]
    found: list[JSONDict] = []
    for kind, pattern in (("bot_command", _COMMAND_RE), ("mention", _MENTION_RE)):
        for match in pattern.finditer(text):
            start = utf16_len(text[: match.start()])
            end = start + utf16_len(match.group(0))
            if any(start < t_end and t_start < end for t_start, t_end in taken):
                continue
            taken.append((start, end))
            found.append({"type": kind, "offset": start, "length": end - start})
    return found


def sort_entities(entities: Iterable[JSONDict]) -> list[JSONDict]:
    return sorted(entities, key=lambda e: (e["offset"], -e["length"]))


def entity_text(text: str, entity: Mapping[str, Any]) -> str:
    raw = text.encode("utf-16-le")
    start, length = 2 * int(entity["offset"]), 2 * int(entity["length"])
    return raw[start : start + length].decode("utf-16-le")


_HTML_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "a": "text_link",
    "tg-emoji": "custom_emoji",
}
_NAMED_HTML_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}


def _decode_html_entity(text: str, i: int) -> tuple[str, int] | None:
    """Decode ``&...;`` at ``i`` like TDLib: only four names and numeric references exist."""
    j = i + 1
    if j < len(text) and text[j] == "#":
        j += 1
        is_hex = j < len(text) and text[j] in "xX"
        j += is_hex
        digits_start = j
        allowed = "0123456789abcdefABCDEF" if is_hex else "0123456789"
        while j < len(text) and text[j] in allowed:
            j += 1
        if j == digits_start or j >= len(text) or text[j] != ";":
            return None
        code = int(text[digits_start:j], 16 if is_hex else 10)
        if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
            return None
        return chr(code), j + 1
    while j < len(text) and text[j].isascii() and text[j].isalpha():
        j += 1
    name = text[i + 1 : j]
    if j < len(text) and text[j] == ";" and name in _NAMED_HTML_ENTITIES:
        return _NAMED_HTML_ENTITIES[name], j + 1
    return None


@dataclass
class _OpenTag:
    name: str
    start: int
    attrs: dict[str, str]


def parse_html(text: str, *, strict: bool = True) -> tuple[str, list[JSONDict]]:
    """Turn Bot API HTML into plain text and entities, failing with TDLib's error messages."""
    out: list[str] = []
    pos = 0  # UTF-16 offset in the output
    stack: list[_OpenTag] = []
    entities: list[JSONDict] = []
    n = len(text)
    i = 0

    def fail(reason: str) -> ApiError:
        return bad_request(f"can't parse entities: {reason}")

    def byte(k: int) -> int:
        return len(text[:k].encode())

    def emit(chunk: str) -> None:
        nonlocal pos
        out.append(chunk)
        pos += utf16_len(chunk)

    while i < n:
        c = text[i]
        if c == "&":
            decoded = _decode_html_entity(text, i)
            if decoded is not None:
                emit(decoded[0])
                i = decoded[1]
                continue
            if strict:
                raise fail(f'Character "&" must be escaped as "&amp;" at byte offset {byte(i)}')
        if c != "<":
            emit(c)
            i += 1
            continue
        begin = i
        i += 1
        if i < n and text[i] == "/":
            if not stack:
                raise fail(f"Unexpected end tag at byte offset {byte(begin)}")
            i += 1
            name_start = i
            while i < n and not text[i].isspace() and text[i] != ">":
                i += 1
            end_name = text[name_start:i].lower()
            while i < n and text[i].isspace():
                i += 1
            if i >= n or text[i] != ">":
                raise fail(f"Unclosed end tag at byte offset {byte(begin)}")
            i += 1
            tag = stack.pop()
            if end_name and end_name != tag.name:
                raise fail(
                    f'Unmatched end tag at byte offset {byte(begin)}, expected "</{tag.name}>", found "</{end_name}>"'
                )
            _close_tag(tag, pos, "".join(out), stack, entities)
            continue
        name_start = i
        while i < n and not text[i].isspace() and text[i] != ">":
            i += 1
        if i >= n:
            raise fail(f"Unclosed start tag at byte offset {byte(begin)}")
        name = text[name_start:i].lower()
        if name not in _HTML_TAGS:
            raise fail(f'Unsupported start tag "{name}" at byte offset {byte(begin)}')
        attrs: dict[str, str] = {}
        while True:
            while i < n and text[i].isspace():
                i += 1
            if i >= n:
                raise fail(f'Unclosed start tag "{name}" at byte offset {byte(begin)}')
            if text[i] == ">":
                i += 1
                break
            attr_start = i
            while i < n and not text[i].isspace() and text[i] not in "=>":
                i += 1
            attr = text[attr_start:i].lower()
            while i < n and text[i].isspace():
                i += 1
            if i >= n or text[i] != "=":
                if name == "blockquote" and attr == "expandable":
                    attrs[attr] = ""
                    continue
                raise fail(
                    f'Expected equal sign in declaration of an attribute of the tag "{name}" '
                    f"at byte offset {byte(begin)}"
                )
            i += 1
            while i < n and text[i].isspace():
                i += 1
            if i >= n:
                raise fail(f'Unclosed start tag "{name}" at byte offset {byte(begin)}')
            if text[i] in "'\"":
                quote = text[i]
                i += 1
                value: list[str] = []
                while i < n and text[i] != quote:
                    decoded = _decode_html_entity(text, i) if text[i] == "&" else None
                    if decoded is not None:
                        value.append(decoded[0])
                        i = decoded[1]
                    else:
                        value.append(text[i])
                        i += 1
                i += 1
                attrs[attr] = "".join(value)
            else:
                token_start = i
                while i < n and (text[i].isalnum() or text[i] in ".-"):
                    i += 1
                if i < n and not text[i].isspace() and text[i] != ">":
                    raise fail(f"Unexpected end of name token at byte offset {byte(token_start)}")
                attrs[attr] = text[token_start:i].lower()
        if name == "span" and attrs.get("class") != "tg-spoiler":
            raise fail(f'Tag "span" must have class "tg-spoiler" at byte offset {byte(begin)}')
        stack.append(_OpenTag(name, pos, attrs))
    if stack:
        raise fail(f'Can\'t find end tag corresponding to start tag "{stack[-1].name}"')
    return "".join(out), sort_entities(entities)


def _close_tag(tag: _OpenTag, end: int, text_so_far: str, stack: list[_OpenTag], out: list[JSONDict]) -> None:
    language = tag.attrs.get("class", "")
    if tag.name == "code" and stack and stack[-1].name == "pre" and language.startswith("language-"):
        # <pre><code class="language-x"> is one "pre" entity with a language, not two entities.
        stack[-1].attrs["language"] = language.removeprefix("language-")
        return
    length = end - tag.start
    if length == 0:
        return  # TDLib drops empty entities
    entity: JSONDict = {"type": _HTML_TAGS[tag.name], "offset": tag.start, "length": length}
    if tag.name == "a":
        entity["url"] = tag.attrs.get("href") or entity_text(text_so_far, entity)
    elif tag.name == "pre" and "language" in tag.attrs:
        entity["language"] = tag.attrs["language"]
    elif tag.name == "blockquote" and "expandable" in tag.attrs:
        entity["type"] = "expandable_blockquote"
    elif tag.name == "tg-emoji":
        entity["custom_emoji_id"] = tag.attrs.get("emoji-id", "")
    out.append(entity)


def _decode_param(name: str, value: str) -> Any:
    if name in _STRING_PARAMS:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _as_int(value: Any, default: int) -> int:
    if value is None or value == "":
        return default
    return int(value)


def _ref_id(ref: ChatRef | UserRef) -> int:
    return int(ref) if isinstance(ref, int) else int(ref["id"])


# BotCommandScope types and the fields each one needs.
_SCOPE_FIELDS: dict[str, tuple[str, ...]] = {
    "default": (),
    "all_private_chats": (),
    "all_group_chats": (),
    "all_chat_administrators": (),
    "chat": ("chat_id",),
    "chat_administrators": ("chat_id",),
    "chat_member": ("chat_id", "user_id"),
}


def _scope_of(raw: Any) -> JSONDict:
    """A setMyCommands/getMyCommands scope, checked and reduced to the fields that identify it."""
    scope = raw or {"type": "default"}
    if not isinstance(scope, dict) or scope.get("type") not in _SCOPE_FIELDS:
        raise bad_request("can't parse BotCommandScope JSON object")
    needed = _SCOPE_FIELDS[scope["type"]]
    if any(scope.get(name) in (None, "") for name in needed):
        raise bad_request(f"bot command scope {scope['type']} needs {', '.join(needed)}")
    # Ids as numbers whether they came as JSON numbers or strings; "@channelname" stays a name.
    ids = {name: int(v) if str(v := scope[name]).lstrip("-").isdigit() else v for name in needed}
    return {"type": scope["type"], **ids}


def _scope_key(scope: JSONDict, language: str) -> str:
    return f"{json.dumps(scope, sort_keys=True)}|{language}"


def _menu_scopes(chat_id: int, group: _Chat | None, user_id: int | None) -> list[JSONDict]:
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


def _bare_reply(message: JSONDict) -> JSONDict:
    """Telegram nests replies one level deep: the replied-to message loses its own reply."""
    return {k: copy.deepcopy(v) for k, v in message.items() if k != "reply_to_message"}


# --- the server -------------------------------------------------------------------------------------


class FakeTelegram:
    """A Bot API server on 127.0.0.1 with an injectable world; see the module docstring."""

    def __init__(
        self,
        *,
        html_strict: bool = True,
        general_commands: Literal["all", "last_bot"] = "all",
    ) -> None:
        self.html_strict = html_strict
        self.general_commands = general_commands
        self.calls: list[Call] = []
        self._bots: dict[str, _Bot] = {}
        self._users: dict[int, JSONDict] = {}
        self._chats: dict[int, _Chat] = {}
        self._messages: dict[tuple[int, int, int], JSONDict] = {}
        self._history: dict[tuple[int, int], list[JSONDict]] = {}
        self._next_message_id: dict[tuple[int, int], int] = {}
        self._authors: dict[tuple[int, int, int], int] = {}  # bot-written messages -> bot id
        self._sent: list[SentMessage] = []
        self._reactions: dict[tuple[int, int, int], dict[str, list[JSONDict]]] = {}
        self._started: set[tuple[int, int]] = set()  # (bot id, user id) pairs with an open DM
        self._blocked_by_user: set[tuple[int, int]] = set()
        self._callback_queries: dict[str, tuple[int, bool]] = {}  # id -> (bot id, answered)
        self._faults: list[_Fault] = []
        self._user_ids = itertools.count(700_000_001)
        self._group_ids = itertools.count(1)
        self._callback_ids = itertools.count(1)
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._methods: dict[str, Callable[[_Bot, JSONDict], Any]] = {
            "getme": self._get_me,
            "logout": self._always_true,
            "close": self._always_true,
            "getupdates": self._get_updates,
            "setwebhook": self._set_webhook,
            "deletewebhook": self._delete_webhook,
            "getwebhookinfo": self._get_webhook_info,
            "setmycommands": self._set_my_commands,
            "getmycommands": self._get_my_commands,
            "deletemycommands": self._delete_my_commands,
            "sendmessage": self._send_message,
            "editmessagetext": self._edit_message_text,
            "deletemessage": self._delete_message,
            "sendchataction": self._send_chat_action,
            "setmessagereaction": self._set_message_reaction,
            "getchat": self._get_chat,
            "getchatmember": self._get_chat_member,
            "getchatadministrators": self._get_chat_administrators,
            "getchatmembercount": self._get_chat_member_count,
            "answercallbackquery": self._answer_callback_query,
        }

    # --- lifecycle ---

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        # handler_cancellation: PTB abandons its long poll on stop; the handler should go with it.
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = int(self._runner.addresses[0][1])
        self._closing = False

    async def stop(self) -> None:
        self._closing = True
        for bot in self._bots.values():
            if bot.poll is not None:
                bot.poll.wake.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._require_port()}/bot"

    @property
    def base_file_url(self) -> str:
        return f"http://127.0.0.1:{self._require_port()}/file/bot"

    def _require_port(self) -> int:
        if self._port is None:
            raise RuntimeError("FakeTelegram is not started")
        return self._port

    # --- building the world ---

    def add_bot(
        self,
        token: str,
        username: str,
        first_name: str,
        can_read_all_group_messages: bool = False,
        *,
        can_join_groups: bool = True,
        supports_inline_queries: bool = False,
        bot_to_bot: bool = False,
    ) -> JSONDict:
        """Register a bot; its id is the number before ":" in the token when there is one."""
        if token in self._bots:
            raise ValueError(f"token already registered: {token}")
        if self._find_bot(username) is not None:
            raise ValueError(f"bot username already registered: {username}")
        prefix = token.split(":", 1)[0]
        bot_id = int(prefix) if prefix.isdigit() else next(self._user_ids)
        if bot_id in self._users:
            raise ValueError(f"id {bot_id} already belongs to {self._users[bot_id]}")
        user: JSONDict = {
            "id": bot_id,
            "is_bot": True,
            "first_name": first_name,
            "username": username,
            "can_join_groups": can_join_groups,
            "can_read_all_group_messages": can_read_all_group_messages,
            "supports_inline_queries": supports_inline_queries,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }
        bot = _Bot(token=token, user=user, bot_to_bot=bot_to_bot)
        self._bots[token] = bot
        self._users[bot_id] = bot.public
        return copy.deepcopy(bot.public)

    def add_user(self, first_name: str, username: str | None = None, *, last_name: str | None = None) -> JSONDict:
        user: JSONDict = {"id": next(self._user_ids), "is_bot": False, "first_name": first_name}
        if last_name:
            user["last_name"] = last_name
        if username:
            user["username"] = username
        self._users[user["id"]] = user
        return copy.deepcopy(user)

    def add_group(
        self,
        title: str,
        admins: Iterable[UserRef] = (),
        members: Iterable[UserRef] = (),
        *,
        creator: UserRef | None = None,
    ) -> JSONDict:
        """A supergroup. Bots must be in ``members`` or ``admins`` to see or post anything."""
        chat_id = -(1_002_000_000_000 + next(self._group_ids))
        state = _Chat(info={"id": chat_id, "type": "supergroup", "title": title})
        self._chats[chat_id] = state
        for ref in admins:
            self.add_member(chat_id, ref, admin=True)
        for ref in members:
            self.add_member(chat_id, ref)
        if creator is not None:
            state.creator = self._known_user_id(creator)
            state.members.add(state.creator)
        return copy.deepcopy(state.info)

    def add_channel(
        self, title: str, discussion_group: ChatRef | None = None, admins: Iterable[UserRef] = ()
    ) -> JSONDict:
        """A channel; bots can only be in one as admins, and get its posts as ``channel_post``."""
        chat_id = -(1_001_000_000_000 + next(self._group_ids))
        state = _Chat(info={"id": chat_id, "type": "channel", "title": title})
        self._chats[chat_id] = state
        for ref in admins:
            self.add_member(chat_id, ref, admin=True)
        if discussion_group is not None:
            group = self._group(discussion_group)
            state.linked_chat_id = group.id
            group.linked_chat_id = chat_id
        return copy.deepcopy(state.info)

    def add_member(self, chat: ChatRef, user: UserRef, *, admin: bool = False) -> None:
        state = self._group(chat)
        user_id = self._known_user_id(user)
        state.members.add(user_id)
        state.kicked.discard(user_id)
        if admin:
            state.admins.add(user_id)

    # --- injecting what humans do ---

    async def user_says(
        self,
        chat: ChatRef,
        user: UserRef,
        text: str,
        reply_to: int | None = None,
        entities: Iterable[JSONDict] | None = None,
        topic: int | None = None,
    ) -> JSONDict:
        """A human posts in a group; the message goes to the bots that would see it.

        ``topic``: the forum topic it is posted in (``message_thread_id``, ``is_topic_message``).
        """
        state = self._group(chat)
        if state.type == "channel":
            raise ValueError("use channel_post() for channels")
        sender = self._human(user)
        state.members.add(sender["id"])  # posting implies membership; saves world-building noise
        conv = (state.id, 0)
        message = self._store(
            conv,
            chat=state.info,
            sender=sender,
            text=text,
            entities=self._user_entities(text, entities),
            reply_to=self._lookup_reply(conv, reply_to),
            extra={"message_thread_id": topic, "is_topic_message": True} if topic is not None else None,
        )
        for bot in self._group_recipients(state, message, author=None):
            self._enqueue(bot, "message", message)
        return copy.deepcopy(message)

    async def user_dms(
        self,
        bot_username: str,
        user: UserRef,
        text: str,
        reply_to: int | None = None,
        entities: Iterable[JSONDict] | None = None,
    ) -> JSONDict:
        """A human writes to a bot in private; opening the chat also lets the bot write back."""
        bot = self._bot(bot_username)
        sender = self._human(user)
        self._started.add((bot.id, sender["id"]))
        self._blocked_by_user.discard((bot.id, sender["id"]))
        conv = (sender["id"], bot.id)
        message = self._store(
            conv,
            chat=self._private_chat(sender),
            sender=sender,
            text=text,
            entities=self._user_entities(text, entities),
            reply_to=self._lookup_reply(conv, reply_to),
        )
        self._enqueue(bot, "message", message)
        return copy.deepcopy(message)

    async def channel_post(
        self, channel: ChatRef, text: str, entities: Iterable[JSONDict] | None = None
    ) -> tuple[JSONDict, JSONDict | None]:
        """A human admin posts in a channel; returns the post and its discussion-group copy."""
        state = self._group(channel)
        if state.type != "channel":
            raise ValueError(f"{state.info['title']!r} is not a channel")
        post = self._store(
            (state.id, 0),
            chat=state.info,
            sender=None,
            sender_chat=state.info,
            text=text,
            entities=self._user_entities(text, entities),
        )
        forwarded = self._publish_channel_post(state, post, author=None)
        return copy.deepcopy(post), copy.deepcopy(forwarded)

    async def user_presses_button(
        self, chat: ChatRef, user: UserRef, message_id: int, data: str, *, bot_username: str | None = None
    ) -> JSONDict:
        """A human presses an inline button; the bot that sent the message gets a callback_query."""
        chat_id = _ref_id(chat)
        sender = self._human(user)
        bot = self._bot(bot_username) if bot_username else None
        if chat_id > 0 and bot is None:
            raise ValueError("a private chat needs bot_username to say which DM the button is in")
        conv = (chat_id, bot.id if bot and chat_id > 0 else 0)
        message = self._messages.get((*conv, message_id))
        if message is None:
            raise ValueError(f"no message {message_id} in chat {chat_id}")
        author = self._authors.get((*conv, message_id))
        owner = bot or next((b for b in self._bots.values() if b.id == author), None)
        if owner is None:
            raise ValueError("callback buttons belong to bot messages")
        query_id = str(next(self._callback_ids))
        self._callback_queries[query_id] = (owner.id, False)
        query: JSONDict = {
            "id": query_id,
            "from": sender,
            "chat_instance": f"ci{chat_id}",
            "message": message,
            "data": data,
        }
        self._enqueue(owner, "callback_query", query)
        return copy.deepcopy(query)

    # --- fault injection ---

    def fail_next(
        self,
        method: str,
        chat_id: ChatRef | str | None = None,
        error_code: int = 429,
        description: str | None = None,
        retry_after: int = 2,
        *,
        bot: str | None = None,
    ) -> None:
        """Make the next matching call fail once. ``bot`` is a username or token."""
        if description is None:
            description = {
                429: f"Too Many Requests: retry after {retry_after}",
                400: "Bad Request",
                403: "Forbidden",
                409: "Conflict",
                500: "Internal Server Error",
                502: "Bad Gateway",
            }.get(error_code, "Error")
        parameters = {"retry_after": retry_after} if error_code == 429 else None
        target = chat_id if chat_id is None or isinstance(chat_id, str) else _ref_id(chat_id)
        self._faults.append(_Fault(method.lower(), target, bot, ApiError(error_code, description, parameters)))

    def block_chat(self, chat_id: ChatRef, bot_token: str) -> None:
        """The bot is kicked from the group (or blocked by the user, for a private chat)."""
        bot = self._bot(bot_token)
        target = _ref_id(chat_id)
        if target > 0:
            self._blocked_by_user.add((bot.id, target))
        else:
            self._group(target).kicked.add(bot.id)

    # --- inspection ---

    def sent(self, chat_id: ChatRef | None = None) -> list[SentMessage]:
        """Messages bots sent, oldest first, optionally in one chat."""
        if chat_id is None:
            return list(self._sent)
        target = _ref_id(chat_id)
        return [s for s in self._sent if s.chat_id == target]

    def history(self, chat: ChatRef) -> list[JSONDict]:
        """Every message stored in a group or channel, humans' and bots', oldest first."""
        return copy.deepcopy(self._history.get((_ref_id(chat), 0), []))

    def delivered(self, bot: str) -> list[JSONDict]:
        """Every update ever queued for a bot (username or token), fetched or not."""
        return copy.deepcopy(self._bot(bot).delivered)

    def calls_to(self, method: str, bot: str | None = None) -> list[Call]:
        wanted = self._bot(bot) if bot else None
        return [
            c for c in self.calls if c.method.lower() == method.lower() and (wanted is None or c.token == wanted.token)
        ]

    def reactions_on(self, chat: ChatRef, message_id: int, *, dm_bot: str | None = None) -> dict[str, list[str]]:
        """Bot username -> emoji it set on a message."""
        conv_bot = self._bot(dm_bot).id if dm_bot else 0
        key = (_ref_id(chat), conv_bot, message_id)
        return {
            username: [str(r.get("emoji", r.get("custom_emoji_id", ""))) for r in reactions]
            for username, reactions in self._reactions.get(key, {}).items()
        }

    def commands_of(self, bot: str) -> dict[str, list[JSONDict]]:
        """Stored command lists keyed by ``"<scope json>|<language>"``."""
        return copy.deepcopy(self._bot(bot).commands)

    def menu_for(self, bot: str, chat: ChatRef, user: UserRef | None = None, language: str = "") -> list[str]:
        """The command names a client shows in ``chat`` (a private chat: the user's id) for ``user``,
        resolved through the scopes the way Telegram documents ("Determining list of commands")."""
        state = self._bot(bot)
        chat_id = _ref_id(chat)
        group = self._chats.get(chat_id)
        for scope in _menu_scopes(chat_id, group, _ref_id(user) if user is not None else None):
            for lang in ([language] if language else []) + [""]:
                commands = state.commands.get(_scope_key(scope, lang))
                if commands is not None:
                    return [str(c["command"]) for c in commands]
        return []

    async def wait_for(
        self,
        predicate: Callable[[], T],
        timeout: float = 5.0,  # noqa: ASYNC109 - a polling deadline, not a cancel scope
        interval: float = 0.01,
    ) -> T:
        """Poll ``predicate`` until it returns something truthy, and return that."""
        return await wait_for(predicate, timeout, interval)

    # --- HTTP plumbing ---

    async def _not_found(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": False, "error_code": 404, "description": "Not Found"}, status=404)

    async def _handle(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        method = request.match_info["method"]
        params = await self._read_params(request)
        bot = self._bots.get(token)
        call = Call(token=token, bot_username=bot.username if bot else None, method=method, params=params)
        self.calls.append(call)
        try:
            if bot is None:
                raise ApiError(401, "Unauthorized")
            self._raise_fault(bot, method, params)
            handler = self._methods.get(method.lower())
            if handler is None:
                raise ApiError(404, "Not Found")
            result = await handler(bot, params)
        except ApiError as err:
            call.ok, call.error_code, call.description = False, err.code, err.description
            return web.json_response(err.payload(), status=err.code)
        except asyncio.CancelledError:
            # Normal for a long poll the client abandoned (PTB does that on updater.stop()).
            call.ok, call.description = False, "client disconnected before the answer"
            raise
        call.result = result
        return web.json_response({"ok": True, "result": result})

    async def _read_params(self, request: web.Request) -> JSONDict:
        params: JSONDict = {k: _decode_param(k, v) for k, v in request.query.items()}
        if request.content_type == "application/json":
            body = await request.json() if request.can_read_body else {}
            params.update(body or {})
        elif request.can_read_body:
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, str):
                    params[key] = _decode_param(key, value)
                elif isinstance(value, web.FileField):
                    params[key] = {
                        "filename": value.filename,
                        "content_type": value.content_type,
                        "size": len(value.file.read()),
                    }
        return params

    def _raise_fault(self, bot: _Bot, method: str, params: JSONDict) -> None:
        chat_id = params.get("chat_id")
        for fault in self._faults:
            if fault.method != method.lower():
                continue
            if fault.bot is not None and fault.bot not in (bot.token, bot.username):
                continue
            if fault.chat_id is not None and str(fault.chat_id) != str(chat_id):
                continue
            self._faults.remove(fault)
            raise fault.error

    # --- Bot API methods ---

    async def _always_true(self, bot: _Bot, p: JSONDict) -> bool:
        return True

    async def _get_me(self, bot: _Bot, p: JSONDict) -> JSONDict:
        return copy.deepcopy(bot.user)

    async def _get_updates(self, bot: _Bot, p: JSONDict) -> list[JSONDict]:
        if bot.webhook_url:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = _as_int(p.get("offset"), 0)
        limit = min(max(_as_int(p.get("limit"), 100), 1), 100)
        timeout = max(float(p.get("timeout") or 0), 0.0)
        if p.get("allowed_updates") is not None:
            bot.allowed_updates = list(p["allowed_updates"])
        if offset > 0:
            bot.pending = [u for u in bot.pending if u["update_id"] >= offset]
        elif offset < 0:
            bot.pending = bot.pending[offset:]
        if bot.poll is not None:
            # Telegram ends the older request, not the new one.
            bot.poll.superseded = True
            bot.poll.wake.set()
        poll = _Poll()
        bot.poll = poll
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while not bot.pending and not self._closing and not poll.superseded:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                poll.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(poll.wake.wait(), remaining)
            if poll.superseded:
                raise ApiError(409, _CONFLICT_OTHER_POLL)
            return copy.deepcopy(bot.pending[:limit])
        finally:
            if bot.poll is poll:
                bot.poll = None

    async def _set_webhook(self, bot: _Bot, p: JSONDict) -> bool:
        bot.webhook_url = str(p.get("url") or "")
        if p.get("drop_pending_updates"):
            bot.pending.clear()
        return True

    async def _delete_webhook(self, bot: _Bot, p: JSONDict) -> bool:
        bot.webhook_url = ""
        if p.get("drop_pending_updates"):
            bot.pending.clear()
        return True

    async def _get_webhook_info(self, bot: _Bot, p: JSONDict) -> JSONDict:
        return {
            "url": bot.webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(bot.pending),
        }

    @staticmethod
    def _commands_key(p: JSONDict) -> str:
        return _scope_key(_scope_of(p.get("scope")), str(p.get("language_code") or ""))

    async def _set_my_commands(self, bot: _Bot, p: JSONDict) -> bool:
        commands = p.get("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise bad_request('field "commands" must be an Array of BotCommand up to 100 elements')
        for command in commands:
            if not re.fullmatch(r"[a-z0-9_]{1,32}", str(command.get("command", ""))):
                raise bad_request("BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description", ""))) <= 256:
                raise bad_request("command description must be 1-256 characters")
        bot.commands[self._commands_key(p)] = [
            {"command": c["command"], "description": c["description"]} for c in commands
        ]
        return True

    async def _get_my_commands(self, bot: _Bot, p: JSONDict) -> list[JSONDict]:
        return copy.deepcopy(bot.commands.get(self._commands_key(p), []))

    async def _delete_my_commands(self, bot: _Bot, p: JSONDict) -> bool:
        bot.commands.pop(self._commands_key(p), None)
        return True

    async def _send_message(self, bot: _Bot, p: JSONDict) -> JSONDict:
        target = self._access(bot, p.get("chat_id"), write=True)
        text, entities = self._bot_text(p)
        reply_to = self._reply_target(target, p)
        extra: JSONDict = {}
        markup = p.get("reply_markup")
        if isinstance(markup, dict) and "inline_keyboard" in markup:
            extra["reply_markup"] = markup  # only inline keyboards are echoed back on the message
        if p.get("message_thread_id") is not None:
            extra["message_thread_id"] = int(p["message_thread_id"])
        is_channel = target.group is not None and target.group.type == "channel"
        message = self._store(
            target.conv,
            chat=target.chat,
            sender=None if is_channel else bot.public,
            sender_chat=target.chat if is_channel else None,
            text=text,
            entities=entities,
            reply_to=reply_to,
            extra=extra,
            author=bot,
        )
        self._sent.append(SentMessage(bot.username, message))
        if target.group is not None and is_channel:
            self._publish_channel_post(target.group, message, author=bot)
        elif target.group is not None:
            target.group.last_bot_id = bot.id
            for other in self._group_recipients(target.group, message, author=bot):
                self._enqueue(other, "message", message)
        return copy.deepcopy(message)

    async def _edit_message_text(self, bot: _Bot, p: JSONDict) -> JSONDict:
        if p.get("inline_message_id"):
            raise bad_request("inline messages are not supported by the fake")
        target = self._access(bot, p.get("chat_id"), write=True)
        key = (*target.conv, _as_int(p.get("message_id"), 0))
        message = self._messages.get(key)
        if message is None:
            raise bad_request("message to edit not found")
        if self._authors.get(key) != bot.id:
            raise bad_request("message can't be edited")
        text, entities = self._bot_text(p)
        markup = p.get("reply_markup") if isinstance(p.get("reply_markup"), dict) else None
        if (
            text == message.get("text")
            and entities == message.get("entities", [])
            and markup == message.get("reply_markup")
        ):
            raise bad_request(
                "message is not modified: specified new message content and reply markup are exactly "
                "the same as a current content and reply markup of the message"
            )
        message["text"] = text
        message.pop("entities", None)
        if entities:
            message["entities"] = entities
        message.pop("reply_markup", None)  # an edit without reply_markup drops the keyboard
        if markup is not None:
            message["reply_markup"] = markup
        message["edit_date"] = int(time.time())
        return copy.deepcopy(message)

    async def _delete_message(self, bot: _Bot, p: JSONDict) -> bool:
        target = self._access(bot, p.get("chat_id"), write=True)
        key = (*target.conv, _as_int(p.get("message_id"), 0))
        if key not in self._messages:
            raise bad_request("message to delete not found")
        own = self._authors.get(key) == bot.id
        is_admin = target.group is not None and bot.id in target.group.admins
        if not (own or is_admin or target.group is None):
            raise bad_request("message can't be deleted")
        message = self._messages.pop(key)
        self._history[target.conv] = [m for m in self._history[target.conv] if m is not message]
        for sent in self._sent:
            if sent.message is message:
                sent.deleted = True
        return True

    async def _send_chat_action(self, bot: _Bot, p: JSONDict) -> bool:
        self._access(bot, p.get("chat_id"), write=True)
        if p.get("action") not in _CHAT_ACTIONS:
            raise bad_request("wrong parameter action in request")
        return True

    async def _set_message_reaction(self, bot: _Bot, p: JSONDict) -> bool:
        target = self._access(bot, p.get("chat_id"), write=True)
        key = (*target.conv, _as_int(p.get("message_id"), 0))
        if key not in self._messages:
            raise bad_request("MESSAGE_ID_INVALID")
        reactions = p.get("reaction") or []
        if not isinstance(reactions, list):
            raise bad_request('field "reaction" must be an Array')
        if len(reactions) > 1:
            raise bad_request("REACTIONS_TOO_MANY")  # bots get one reaction per message
        for reaction in reactions:
            if reaction.get("type") != "emoji" or reaction.get("emoji") not in _REACTION_EMOJI:
                raise bad_request("REACTION_INVALID")
        per_message = self._reactions.setdefault(key, {})
        if reactions:
            per_message[bot.username] = copy.deepcopy(reactions)
        else:
            per_message.pop(bot.username, None)
        return True

    async def _get_chat(self, bot: _Bot, p: JSONDict) -> JSONDict:
        target = self._access(bot, p.get("chat_id"), write=False)
        info: JSONDict = {
            **copy.deepcopy(target.chat),
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": False,
                "limited_gifts": False,
                "unique_gifts": False,
                "premium_subscription": False,
                "gifts_from_channels": False,
            },
        }
        if target.group is not None and target.group.linked_chat_id is not None:
            info["linked_chat_id"] = target.group.linked_chat_id
        return info

    def _member(self, state: _Chat, user_id: int) -> JSONDict:
        user = copy.deepcopy(self._users[user_id])
        if user_id == state.creator:
            return {"status": "creator", "user": user, "is_anonymous": False}
        if user_id in state.admins:
            rights = (
                "can_manage_chat",
                "can_delete_messages",
                "can_manage_video_chats",
                "can_restrict_members",
                "can_promote_members",
                "can_change_info",
                "can_invite_users",
                "can_post_stories",
                "can_edit_stories",
                "can_delete_stories",
                "can_pin_messages",
            )
            return {
                "status": "administrator",
                "user": user,
                "can_be_edited": False,
                "is_anonymous": False,
                **dict.fromkeys(rights, True),
            }
        if user_id in state.kicked:
            return {"status": "kicked", "user": user, "until_date": 0}
        if user_id in state.members:
            return {"status": "member", "user": user}
        return {"status": "left", "user": user}

    async def _get_chat_member(self, bot: _Bot, p: JSONDict) -> JSONDict:
        target = self._access(bot, p.get("chat_id"), write=False)
        user_id = _as_int(p.get("user_id"), 0)
        if user_id not in self._users:
            raise bad_request("PARTICIPANT_ID_INVALID")
        if target.group is None:
            status = "member" if user_id in (bot.id, target.chat["id"]) else "left"
            return {"status": status, "user": copy.deepcopy(self._users[user_id])}
        return self._member(target.group, user_id)

    async def _get_chat_administrators(self, bot: _Bot, p: JSONDict) -> list[JSONDict]:
        target = self._access(bot, p.get("chat_id"), write=False)
        if target.group is None:
            raise bad_request("there are no administrators in the private chat")
        ids = ([target.group.creator] if target.group.creator else []) + sorted(target.group.admins)
        return [self._member(target.group, user_id) for user_id in ids]

    async def _get_chat_member_count(self, bot: _Bot, p: JSONDict) -> int:
        target = self._access(bot, p.get("chat_id"), write=False)
        return len(target.group.members) if target.group else 2

    async def _answer_callback_query(self, bot: _Bot, p: JSONDict) -> bool:
        query_id = str(p.get("callback_query_id", ""))
        entry = self._callback_queries.get(query_id)
        if entry is None or entry[0] != bot.id or entry[1]:
            raise bad_request("query is too old and response timeout expired or query ID is invalid")
        self._callback_queries[query_id] = (bot.id, True)
        return True

    # --- rules ---

    def _access(self, bot: _Bot, raw_chat_id: Any, *, write: bool) -> _Target:
        """Resolve chat_id for this bot, raising the error Telegram would give."""
        try:
            chat_id = int(raw_chat_id)
        except (TypeError, ValueError):
            raise bad_request("chat not found") from None
        if chat_id > 0:
            user = self._users.get(chat_id)
            if user is None:
                raise bad_request("chat not found")
            if user.get("is_bot"):
                raise ApiError(403, "Forbidden: bot can't send messages to bots")
            if (bot.id, chat_id) in self._blocked_by_user:
                raise ApiError(403, "Forbidden: bot was blocked by the user")
            if write and (bot.id, chat_id) not in self._started:
                raise ApiError(403, "Forbidden: bot can't initiate conversation with a user")
            return _Target(conv=(chat_id, bot.id), chat=self._private_chat(user), group=None)
        state = self._chats.get(chat_id)
        if state is None:
            raise bad_request("chat not found")
        if bot.id in state.kicked:
            raise ApiError(403, f"Forbidden: bot was kicked from the {state.type} chat")
        if bot.id not in state.members:
            raise ApiError(403, f"Forbidden: bot is not a member of the {state.type} chat")
        if write and state.type == "channel" and bot.id not in state.admins:
            raise bad_request("need administrator rights in the channel chat")
        return _Target(conv=(chat_id, 0), chat=state.info, group=state)

    def _bot_text(self, p: JSONDict) -> tuple[str, list[JSONDict]]:
        raw = p.get("text")
        if raw is None or str(raw).strip() == "":
            raise bad_request("message text is empty")
        text = str(raw)
        parse_mode = str(p.get("parse_mode") or "")
        explicit = p.get("entities")
        if isinstance(explicit, list):
            entities = list(explicit)
        elif parse_mode.lower() == "html":
            text, entities = parse_html(text, strict=self.html_strict)
        elif parse_mode.lower() in ("", "markdown", "markdownv2"):
            entities = []
        else:
            raise bad_request(f"unsupported parse_mode {parse_mode}")
        if not text.strip():
            raise bad_request("message text is empty")
        if utf16_len(text) > MAX_TEXT_UTF16:
            raise bad_request("message is too long")
        return text, sort_entities(entities + auto_entities(text, entities))

    def _reply_target(self, target: _Target, p: JSONDict) -> JSONDict | None:
        params = p.get("reply_parameters")
        if isinstance(params, dict):
            message_id = params.get("message_id")
            allow_missing = bool(params.get("allow_sending_without_reply"))
            if params.get("chat_id") not in (None, target.chat["id"]):
                raise bad_request("replies to other chats are not supported by the fake")
        else:
            message_id = p.get("reply_to_message_id")
            allow_missing = bool(p.get("allow_sending_without_reply"))
        if message_id is None:
            return None
        message = self._messages.get((*target.conv, int(message_id)))
        if message is None and not allow_missing:
            raise bad_request("message to be replied not found")
        return message

    def _group_recipients(self, state: _Chat, message: JSONDict, author: _Bot | None) -> list[_Bot]:
        """Which bots get a group message, per Telegram's privacy rules (module docstring)."""
        bots = [
            b for b in self._bots.values() if b.id in state.members and b.id not in state.kicked and b is not author
        ]
        text = message.get("text", "")
        entities = message.get("entities", [])
        command = next((e for e in entities if e["type"] == "bot_command" and e["offset"] == 0), None)
        is_command = command is not None
        command_target: str | None = None
        if command is not None:
            _, _, addressed = entity_text(text, command).partition("@")
            command_target = addressed.lower() or None
        mentioned = {entity_text(text, e)[1:].lower() for e in entities if e["type"] == "mention"}
        mentioned_ids = {e["user"]["id"] for e in entities if e["type"] == "text_mention" and "user" in e}
        reply = message.get("reply_to_message") or {}
        replied_bot = reply.get("from", {}).get("id") if reply.get("from", {}).get("is_bot") else None

        if author is not None:
            # Bot-to-Bot mode: only commands addressed to the bot and direct replies to it.
            return [b for b in bots if b.bot_to_bot and (b.id == replied_bot or command_target == b.username.lower())]

        def reads_all(b: _Bot) -> bool:
            privacy_off = bool(b.user["can_read_all_group_messages"])
            return privacy_off or b.id in state.admins or b.id == state.creator

        chosen = [b for b in bots if reads_all(b)]
        private = [b for b in bots if not reads_all(b)]
        replied_private = [b for b in private if b.id == replied_bot]
        if replied_private:
            return chosen + replied_private  # a reply is for its bot alone among privacy-mode bots
        for b in private:
            name = b.username.lower()
            if is_command and (
                command_target == name
                or (command_target is None and (self.general_commands == "all" or state.last_bot_id == b.id))
            ):
                chosen.append(b)
            elif name in mentioned or b.id in mentioned_ids:
                chosen.append(b)
        return chosen

    def _publish_channel_post(self, channel: _Chat, post: JSONDict, author: _Bot | None) -> JSONDict | None:
        if author is None:
            for bot in self._bots.values():
                if bot.id in channel.members and bot.id not in channel.kicked:
                    self._enqueue(bot, "channel_post", post)
        if channel.linked_chat_id is None:
            return None
        group = self._chats[channel.linked_chat_id]
        forwarded = self._store(
            (group.id, 0),
            chat=group.info,
            sender=TELEGRAM_SERVICE_USER,
            sender_chat=channel.info,
            text=post.get("text", ""),
            entities=copy.deepcopy(post.get("entities", [])),
            extra={
                "is_automatic_forward": True,
                "forward_origin": {
                    "type": "channel",
                    "chat": copy.deepcopy(channel.info),
                    "message_id": post["message_id"],
                    "date": post["date"],
                },
            },
            author=author,
        )
        if author is None:
            for bot in self._group_recipients(group, forwarded, author=None):
                self._enqueue(bot, "message", forwarded)
        return forwarded

    def _enqueue(self, bot: _Bot, kind: str, payload: JSONDict) -> None:
        allowed = kind in bot.allowed_updates if bot.allowed_updates else kind not in _OPT_IN_UPDATES
        if not allowed:
            return
        update = {"update_id": bot.next_update_id, kind: copy.deepcopy(payload)}
        bot.next_update_id += 1
        bot.pending.append(update)
        bot.delivered.append(update)
        if bot.poll is not None:
            bot.poll.wake.set()

    # --- storage and lookups ---

    def _store(
        self,
        conv: tuple[int, int],
        *,
        chat: JSONDict,
        sender: JSONDict | None,
        text: str,
        entities: list[JSONDict],
        sender_chat: JSONDict | None = None,
        reply_to: JSONDict | None = None,
        extra: JSONDict | None = None,
        author: _Bot | None = None,
    ) -> JSONDict:
        message_id = self._next_message_id.get(conv, 1)
        self._next_message_id[conv] = message_id + 1
        message: JSONDict = {"message_id": message_id}
        if sender is not None:
            message["from"] = copy.deepcopy(sender)
        if sender_chat is not None:
            message["sender_chat"] = copy.deepcopy(sender_chat)
        message["chat"] = copy.deepcopy(chat)
        message["date"] = int(time.time())
        if reply_to is not None:
            message["reply_to_message"] = _bare_reply(reply_to)
            # Comments under a channel post live in the thread of its automatic forward.
            thread = reply_to.get("message_thread_id") or (
                reply_to["message_id"] if reply_to.get("is_automatic_forward") else None
            )
            if thread is not None:
                message["message_thread_id"] = thread
        message.update(extra or {})
        message["text"] = text
        if entities:
            message["entities"] = entities
        key = (*conv, message_id)
        self._messages[key] = message
        self._history.setdefault(conv, []).append(message)
        if author is not None:
            self._authors[key] = author.id
        return message

    def _lookup_reply(self, conv: tuple[int, int], reply_to: int | None) -> JSONDict | None:
        if reply_to is None:
            return None
        message = self._messages.get((*conv, reply_to))
        if message is None:
            raise ValueError(f"no message {reply_to} in chat {conv[0]} to reply to")
        return message

    @staticmethod
    def _user_entities(text: str, given: Iterable[JSONDict] | None) -> list[JSONDict]:
        explicit = [dict(e) for e in given or ()]
        return sort_entities(explicit + auto_entities(text, explicit))

    def _find_bot(self, name_or_token: str) -> _Bot | None:
        bot = self._bots.get(name_or_token)
        if bot is not None:
            return bot
        wanted = name_or_token.removeprefix("@").lower()
        return next((b for b in self._bots.values() if b.username.lower() == wanted), None)

    def _bot(self, name_or_token: str) -> _Bot:
        bot = self._find_bot(name_or_token)
        if bot is None:
            raise KeyError(f"unknown bot: {name_or_token}")
        return bot

    def _group(self, chat: ChatRef) -> _Chat:
        chat_id = _ref_id(chat)
        state = self._chats.get(chat_id)
        if state is None:
            raise KeyError(f"unknown group or channel: {chat_id}")
        return state

    def _known_user_id(self, user: UserRef) -> int:
        user_id = _ref_id(user)
        if user_id not in self._users:
            raise KeyError(f"unknown user or bot: {user_id}")
        return user_id

    def _human(self, user: UserRef) -> JSONDict:
        found = self._users[self._known_user_id(user)]
        if found.get("is_bot"):
            raise ValueError("bots speak through the Bot API, not through user_says/user_dms")
        return found

    @staticmethod
    def _private_chat(user: Mapping[str, Any]) -> JSONDict:
        chat: JSONDict = {"id": user["id"], "type": "private", "first_name": user["first_name"]}
        for key in ("last_name", "username"):
            if key in user:
                chat[key] = user[key]
        return chat
