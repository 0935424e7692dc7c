"""The Bot API methods the fake implements, one handler each: (bot, params) -> result or ApiError."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import re
import time

from tests.fakes.telegram.models import (
    CHAT_ACTIONS,
    CONFLICT_OTHER_POLL,
    REACTION_EMOJI,
    ApiError,
    BotAccount,
    ChatState,
    JSONDict,
    Poll,
    SentMessage,
    as_int,
    bad_request,
)
from tests.fakes.telegram.scopes import scope_key, scope_of
from tests.fakes.telegram.world import TelegramWorld


class BotApiMethods(TelegramWorld):
    """getUpdates, commands, messages, reactions, chats and members, callback answers."""

    async def _always_true(self, bot: BotAccount, p: JSONDict) -> bool:
        return True

    async def _get_me(self, bot: BotAccount, p: JSONDict) -> JSONDict:
        return copy.deepcopy(bot.user)

    async def _get_updates(self, bot: BotAccount, p: JSONDict) -> list[JSONDict]:
        if bot.webhook_url:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = as_int(p.get("offset"), 0)
        limit = min(max(as_int(p.get("limit"), 100), 1), 100)
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
        poll = Poll()
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
                raise ApiError(409, CONFLICT_OTHER_POLL)
            return copy.deepcopy(bot.pending[:limit])
        finally:
            if bot.poll is poll:
                bot.poll = None

    async def _set_webhook(self, bot: BotAccount, p: JSONDict) -> bool:
        bot.webhook_url = str(p.get("url") or "")
        if p.get("drop_pending_updates"):
            bot.pending.clear()
        return True

    async def _delete_webhook(self, bot: BotAccount, p: JSONDict) -> bool:
        bot.webhook_url = ""
        if p.get("drop_pending_updates"):
            bot.pending.clear()
        return True

    async def _get_webhook_info(self, bot: BotAccount, p: JSONDict) -> JSONDict:
        return {
            "url": bot.webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(bot.pending),
        }

    @staticmethod
    def _commands_key(p: JSONDict) -> str:
        return scope_key(scope_of(p.get("scope")), str(p.get("language_code") or ""))

    async def _set_my_commands(self, bot: BotAccount, p: JSONDict) -> bool:
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

    async def _get_my_commands(self, bot: BotAccount, p: JSONDict) -> list[JSONDict]:
        return copy.deepcopy(bot.commands.get(self._commands_key(p), []))

    async def _delete_my_commands(self, bot: BotAccount, p: JSONDict) -> bool:
        bot.commands.pop(self._commands_key(p), None)
        return True

    async def _send_message(self, bot: BotAccount, p: JSONDict) -> JSONDict:
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

    async def _edit_message_text(self, bot: BotAccount, p: JSONDict) -> JSONDict:
        if p.get("inline_message_id"):
            raise bad_request("inline messages are not supported by the fake")
        target = self._access(bot, p.get("chat_id"), write=True)
        key = (*target.conv, as_int(p.get("message_id"), 0))
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

    async def _delete_message(self, bot: BotAccount, p: JSONDict) -> bool:
        target = self._access(bot, p.get("chat_id"), write=True)
        key = (*target.conv, as_int(p.get("message_id"), 0))
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

    async def _send_chat_action(self, bot: BotAccount, p: JSONDict) -> bool:
        self._access(bot, p.get("chat_id"), write=True)
        if p.get("action") not in CHAT_ACTIONS:
            raise bad_request("wrong parameter action in request")
        return True

    async def _set_message_reaction(self, bot: BotAccount, p: JSONDict) -> bool:
        target = self._access(bot, p.get("chat_id"), write=True)
        key = (*target.conv, as_int(p.get("message_id"), 0))
        if key not in self._messages:
            raise bad_request("MESSAGE_ID_INVALID")
        reactions = p.get("reaction") or []
        if not isinstance(reactions, list):
            raise bad_request('field "reaction" must be an Array')
        if len(reactions) > 1:
            raise bad_request("REACTIONS_TOO_MANY")  # bots get one reaction per message
        for reaction in reactions:
            if reaction.get("type") != "emoji" or reaction.get("emoji") not in REACTION_EMOJI:
                raise bad_request("REACTION_INVALID")
        per_message = self._reactions.setdefault(key, {})
        if reactions:
            per_message[bot.username] = copy.deepcopy(reactions)
        else:
            per_message.pop(bot.username, None)
        return True

    async def _get_chat(self, bot: BotAccount, p: JSONDict) -> JSONDict:
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

    def _member(self, state: ChatState, user_id: int) -> JSONDict:
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

    async def _get_chat_member(self, bot: BotAccount, p: JSONDict) -> JSONDict:
        target = self._access(bot, p.get("chat_id"), write=False)
        user_id = as_int(p.get("user_id"), 0)
        if user_id not in self._users:
            raise bad_request("PARTICIPANT_ID_INVALID")
        if target.group is None:
            status = "member" if user_id in (bot.id, target.chat["id"]) else "left"
            return {"status": status, "user": copy.deepcopy(self._users[user_id])}
        return self._member(target.group, user_id)

    async def _get_chat_administrators(self, bot: BotAccount, p: JSONDict) -> list[JSONDict]:
        target = self._access(bot, p.get("chat_id"), write=False)
        if target.group is None:
            raise bad_request("there are no administrators in the private chat")
        ids = ([target.group.creator] if target.group.creator else []) + sorted(target.group.admins)
        return [self._member(target.group, user_id) for user_id in ids]

    async def _get_chat_member_count(self, bot: BotAccount, p: JSONDict) -> int:
        target = self._access(bot, p.get("chat_id"), write=False)
        return len(target.group.members) if target.group else 2

    async def _answer_callback_query(self, bot: BotAccount, p: JSONDict) -> bool:
        query_id = str(p.get("callback_query_id", ""))
        entry = self._callback_queries.get(query_id)
        if entry is None or entry[0] != bot.id or entry[1]:
            raise bad_request("query is too old and response timeout expired or query ID is invalid")
        self._callback_queries[query_id] = (bot.id, True)
        return True
