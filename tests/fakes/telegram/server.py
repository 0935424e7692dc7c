"""FakeTelegram: the HTTP server and its method table, and the humans a test scripts."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Iterable
from typing import Any, Literal, Self

from aiohttp import web

from tests.fakes.telegram.files import TelegramFiles, as_photo
from tests.fakes.telegram.methods import BotApiMethods
from tests.fakes.telegram.models import (
    ApiError,
    BotAccount,
    Call,
    ChatRef,
    JSONDict,
    UserRef,
    decode_param,
    ref_id,
)


class FakeTelegram(BotApiMethods, TelegramFiles):
    """A Bot API server on 127.0.0.1 with an injectable world; see the package docstring."""

    def __init__(
        self,
        *,
        html_strict: bool = True,
        general_commands: Literal["all", "last_bot"] = "all",
    ) -> None:
        super().__init__(html_strict=html_strict, general_commands=general_commands)
        TelegramFiles.__init__(self)
        self._methods: dict[str, Callable[[BotAccount, JSONDict], Any]] = {
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
            "getfile": self._get_file,
        }

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_get("/file/bot{token}/{path:.*}", self._serve_file)
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

    async def user_posts_photo(
        self,
        chat: ChatRef,
        user: UserRef,
        photo: list[JSONDict],
        caption: str = "",
        topic: int | None = None,
        album: str | None = None,
    ) -> JSONDict:
        """A human posts a photo (sizes from photo_sizes()) with an optional caption, and no text.
        `album`: its media_group_id, as each photo of an album arrives as its own message."""
        state = self._group(chat)
        sender = self._human(user)
        state.members.add(sender["id"])
        extra: JSONDict = {"message_thread_id": topic, "is_topic_message": True} if topic is not None else {}
        if album is not None:
            extra["media_group_id"] = album
        message = self._store((state.id, 0), chat=state.info, sender=sender, text=caption, entities=[], extra=extra)
        as_photo(message, photo)
        for bot in self._group_recipients(state, message, author=None):
            self._enqueue(bot, "message", message)
        return copy.deepcopy(message)

    def _bot_tokens(self) -> set[str]:
        return set(self._bots)

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
        self,
        channel: ChatRef,
        text: str,
        entities: Iterable[JSONDict] | None = None,
        photo: list[JSONDict] | None = None,
    ) -> tuple[JSONDict, JSONDict | None]:
        """A human admin posts in a channel; returns the post and its discussion-group copy.
        With `photo` (sizes from photo_sizes()) it is a photo post and `text` its caption."""
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
        if photo is not None:
            as_photo(post, photo)
        forwarded = self._publish_channel_post(state, post, author=None)
        return copy.deepcopy(post), copy.deepcopy(forwarded)

    async def user_presses_button(
        self, chat: ChatRef, user: UserRef, message_id: int, data: str, *, bot_username: str | None = None
    ) -> JSONDict:
        """A human presses an inline button; the bot that sent the message gets a callback_query."""
        chat_id = ref_id(chat)
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
        params: JSONDict = {k: decode_param(k, v) for k, v in request.query.items()}
        if request.content_type == "application/json":
            body = await request.json() if request.can_read_body else {}
            params.update(body or {})
        elif request.can_read_body:
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, str):
                    params[key] = decode_param(key, value)
                elif isinstance(value, web.FileField):
                    params[key] = {
                        "filename": value.filename,
                        "content_type": value.content_type,
                        "size": len(value.file.read()),
                    }
        return params

    def _raise_fault(self, bot: BotAccount, method: str, params: JSONDict) -> None:
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
