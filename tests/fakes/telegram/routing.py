"""Telegram's rules: which chats a bot may use, what its text becomes, and which bots see a message."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from tests.fakes.telegram.entities import auto_entities, entity_text, sort_entities, utf16_len
from tests.fakes.telegram.html import parse_html
from tests.fakes.telegram.models import (
    MAX_TEXT_UTF16,
    TELEGRAM_SERVICE_USER,
    ApiError,
    BotAccount,
    ChatState,
    JSONDict,
    Target,
    bad_request,
)
from tests.fakes.telegram.state import TelegramState


@dataclass(frozen=True)
class _Addressing:
    """Whom a group message addresses: its leading command's @bot, its mentions, the bot it replies to."""

    is_command: bool
    command_target: str | None  # the lower-cased @bot of a leading /cmd@bot, None for a bare /cmd
    mentioned: frozenset[str]  # @usernames, lower-cased
    mentioned_ids: frozenset[int]  # text_mention users
    replied_bot: int | None

    @classmethod
    def of(cls, message: JSONDict) -> _Addressing:
        text = message.get("text", "")
        entities = message.get("entities", [])
        command = next((e for e in entities if e["type"] == "bot_command" and e["offset"] == 0), None)
        command_target: str | None = None
        if command is not None:
            _, _, addressed = entity_text(text, command).partition("@")
            command_target = addressed.lower() or None
        reply_from = (message.get("reply_to_message") or {}).get("from", {})
        return cls(
            is_command=command is not None,
            command_target=command_target,
            mentioned=frozenset(entity_text(text, e)[1:].lower() for e in entities if e["type"] == "mention"),
            mentioned_ids=frozenset(e["user"]["id"] for e in entities if e["type"] == "text_mention" and "user" in e),
            replied_bot=reply_from.get("id") if reply_from.get("is_bot") else None,
        )


def _reads_all(bot: BotAccount, state: ChatState) -> bool:
    privacy_off = bool(bot.user["can_read_all_group_messages"])
    return privacy_off or bot.id in state.admins or bot.id == state.creator


class Routing(TelegramState):
    """Access checks and delivery, per the privacy rules in the package docstring."""

    def _access(self, bot: BotAccount, raw_chat_id: Any, *, write: bool) -> Target:
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
            return Target(conv=(chat_id, bot.id), chat=self._private_chat(user), group=None)
        state = self._chats.get(chat_id)
        if state is None:
            raise bad_request("chat not found")
        if bot.id in state.kicked:
            raise ApiError(403, f"Forbidden: bot was kicked from the {state.type} chat")
        if bot.id not in state.members:
            raise ApiError(403, f"Forbidden: bot is not a member of the {state.type} chat")
        if write and state.type == "channel" and bot.id not in state.admins:
            raise bad_request("need administrator rights in the channel chat")
        return Target(conv=(chat_id, 0), chat=state.info, group=state)

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

    def _reply_target(self, target: Target, p: JSONDict) -> JSONDict | None:
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

    def _group_recipients(self, state: ChatState, message: JSONDict, author: BotAccount | None) -> list[BotAccount]:
        """Which bots get a group message, per Telegram's privacy rules (package docstring)."""
        bots = [
            b for b in self._bots.values() if b.id in state.members and b.id not in state.kicked and b is not author
        ]
        to = _Addressing.of(message)
        if author is not None:
            # Bot-to-Bot mode: only commands addressed to the bot and direct replies to it.
            return [
                b for b in bots if b.bot_to_bot and (b.id == to.replied_bot or to.command_target == b.username.lower())
            ]
        chosen = [b for b in bots if _reads_all(b, state)]
        private = [b for b in bots if not _reads_all(b, state)]
        replied_private = [b for b in private if b.id == to.replied_bot]
        if replied_private:
            return chosen + replied_private  # a reply is for its bot alone among privacy-mode bots
        return chosen + [b for b in private if self._privacy_bot_gets(b, state, to)]

    def _privacy_bot_gets(self, bot: BotAccount, state: ChatState, to: _Addressing) -> bool:
        """Commands meant for it (bare ones per ``general_commands``), and mentions of it."""
        name = bot.username.lower()
        if to.is_command and to.command_target == name:
            return True
        general = self.general_commands == "all" or state.last_bot_id == bot.id
        if to.is_command and to.command_target is None and general:
            return True
        return name in to.mentioned or bot.id in to.mentioned_ids

    def _publish_channel_post(self, channel: ChatState, post: JSONDict, author: BotAccount | None) -> JSONDict | None:
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
        if "photo" in post:  # the copy is a photo post too, with the same caption
            forwarded["photo"] = copy.deepcopy(post["photo"])
            forwarded.pop("text", None)
            if "caption" in post:
                forwarded["caption"] = post["caption"]
        if author is None:
            for bot in self._group_recipients(group, forwarded, author=None):
                self._enqueue(bot, "message", forwarded)
        return forwarded
