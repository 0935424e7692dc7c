"""Where things live on Telegram, as the fleet's string ids.

A group's channel is its chat id; a forum topic's or a channel post's comment thread is
"<chat id>/<thread>"; a private chat's is "<user id>@<bot>" (the same user has a separate chat with
every bot). A message id is "<channel>:<message number>", the same for every bot that receives it,
so the core handles a message seen by several bots once.
"""

from __future__ import annotations

from dataclasses import dataclass

PLATFORM = "telegram"
HOST = "host"


def account_of(persona_id: str | None) -> str:
    """The fleet account of a persona's own bot, or of the host bot (None)."""
    return f"{PLATFORM}:{persona_id or HOST}"


@dataclass(frozen=True, slots=True)
class Place:
    """Where a message lives: a chat id; for private chats the bot whose chat it is; for forum topics
    and the comments under a channel post, the thread (its own conversation, like a Discord thread)."""

    chat_id: int
    dm_account: str | None = None
    thread: int | None = None

    @property
    def channel(self) -> str:
        if self.dm_account is not None:
            return f"{self.chat_id}@{self.dm_account.removeprefix(PLATFORM + ':')}"
        return f"{self.chat_id}/{self.thread}" if self.thread else str(self.chat_id)

    @property
    def is_private(self) -> bool:
        return self.dm_account is not None

    @classmethod
    def parse(cls, channel: str) -> Place:
        chat, sep, who = channel.partition("@")
        if sep:
            return cls(int(chat), f"{PLATFORM}:{who}")
        chat, sep, thread = channel.partition("/")
        return cls(int(chat), None, int(thread) if sep else None)

    def message_id(self, number: int) -> str:
        return f"{self.channel}:{number}"

    def number(self, message_id: str | None) -> int | None:
        """The Telegram message number of one of our ids, if it belongs to this chat."""
        if not message_id:
            return None
        channel, _, number = message_id.rpartition(":")
        return int(number) if channel == self.channel and number.isdigit() else None
