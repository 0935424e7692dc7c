"""Everything the fake Telegram stores: bots, users, chats, messages, updates; and lookups into it."""

from __future__ import annotations

import copy
import itertools
import time
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from aiohttp import web

from tests.fakes.telegram.entities import auto_entities, sort_entities
from tests.fakes.telegram.models import (
    OPT_IN_UPDATES,
    BotAccount,
    Call,
    ChatRef,
    ChatState,
    Fault,
    JSONDict,
    SentMessage,
    UserRef,
    ref_id,
)


def bare_reply(message: JSONDict) -> JSONDict:
    """Telegram nests replies one level deep: the replied-to message loses its own reply."""
    return {k: copy.deepcopy(v) for k, v in message.items() if k != "reply_to_message"}


class TelegramState:
    """The world's data and the storage every other layer writes through."""

    def __init__(
        self,
        *,
        html_strict: bool = True,
        general_commands: Literal["all", "last_bot"] = "all",
    ) -> None:
        self.html_strict = html_strict
        self.general_commands = general_commands
        self.calls: list[Call] = []
        self._bots: dict[str, BotAccount] = {}
        self._users: dict[int, JSONDict] = {}
        self._chats: dict[int, ChatState] = {}
        self._messages: dict[tuple[int, int, int], JSONDict] = {}
        self._history: dict[tuple[int, int], list[JSONDict]] = {}
        self._next_message_id: dict[tuple[int, int], int] = {}
        self._authors: dict[tuple[int, int, int], int] = {}  # bot-written messages -> bot id
        self._sent: list[SentMessage] = []
        self._reactions: dict[tuple[int, int, int], dict[str, list[JSONDict]]] = {}
        self._started: set[tuple[int, int]] = set()  # (bot id, user id) pairs with an open DM
        self._blocked_by_user: set[tuple[int, int]] = set()
        self._callback_queries: dict[str, tuple[int, bool]] = {}  # id -> (bot id, answered)
        self._faults: list[Fault] = []
        self._user_ids = itertools.count(700_000_001)
        self._group_ids = itertools.count(1)
        self._callback_ids = itertools.count(1)
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

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
        author: BotAccount | None = None,
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
            message["reply_to_message"] = bare_reply(reply_to)
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

    def _enqueue(self, bot: BotAccount, kind: str, payload: JSONDict) -> None:
        allowed = kind in bot.allowed_updates if bot.allowed_updates else kind not in OPT_IN_UPDATES
        if not allowed:
            return
        update = {"update_id": bot.next_update_id, kind: copy.deepcopy(payload)}
        bot.next_update_id += 1
        bot.pending.append(update)
        bot.delivered.append(update)
        if bot.poll is not None:
            bot.poll.wake.set()

    @staticmethod
    def _user_entities(text: str, given: Iterable[JSONDict] | None) -> list[JSONDict]:
        explicit = [dict(e) for e in given or ()]
        return sort_entities(explicit + auto_entities(text, explicit))

    def _find_bot(self, name_or_token: str) -> BotAccount | None:
        bot = self._bots.get(name_or_token)
        if bot is not None:
            return bot
        wanted = name_or_token.removeprefix("@").lower()
        return next((b for b in self._bots.values() if b.username.lower() == wanted), None)

    def _bot(self, name_or_token: str) -> BotAccount:
        bot = self._find_bot(name_or_token)
        if bot is None:
            raise KeyError(f"unknown bot: {name_or_token}")
        return bot

    def _group(self, chat: ChatRef) -> ChatState:
        chat_id = ref_id(chat)
        state = self._chats.get(chat_id)
        if state is None:
            raise KeyError(f"unknown group or channel: {chat_id}")
        return state

    def _known_user_id(self, user: UserRef) -> int:
        user_id = ref_id(user)
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
