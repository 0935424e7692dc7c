"""Gateway messages into the core's Message events; our own echoes are dropped here, since the core
feeds every message the fleet sends back into the conversation itself."""

from __future__ import annotations

from collections.abc import Callable

import discord

from adapters.discord.accounts import Accounts
from adapters.discord.channels import Channels, where_of
from adapters.discord.common import PLATFORM, Bounded, Where, webhook_username
from adapters.discord.feeds import Feeds
from adapters.discord.photos import photo_title, photos_of
from adapters.discord.webhooks import Webhooks
from bots.config import DiscordConfig
from bots.core.events import Author, Message
from bots.core.ports import FleetView
from bots.persona import Persona


class Inbound:
    def __init__(
        self,
        config: DiscordConfig,
        accounts: Accounts,
        webhooks: Webhooks,
        channels: Channels,
        feeds: Feeds,
        fleet: Callable[[], FleetView | None],
        personas: Callable[[], list[Persona]],
    ) -> None:
        self._config = config
        self._accounts = accounts
        self._webhooks = webhooks
        self._channels = channels
        self._feeds = feeds
        self._fleet = fleet
        self._personas = personas
        self.app_id: int | None = None
        self._seen: Bounded = Bounded(5000)

    async def receive(self, account: str, message: discord.Message) -> None:
        """A gateway message from one of our receivers; the others may deliver the same one."""
        if message.id in self._seen:
            return
        self._seen[message.id] = True
        if await self._is_ours(message):
            return
        event = self._message_event(account, message)
        fleet = self._fleet()
        if event is not None and fleet is not None:
            await fleet.dispatch(event)

    async def _is_ours(self, message: discord.Message) -> bool:
        """Our accounts' and webhooks' own messages: the core has already fed them back."""
        if message.author.id in self._accounts.bot_ids:
            return True
        hook = message.webhook_id
        if hook is None:
            return False
        if hook in self._webhooks.ours or hook == self.app_id:
            return True
        if self._config.ignore_foreign_bots:
            # Dropped as a foreign bot's message anyway: no need to ask whose hook it is.
            return False
        channel = message.channel
        parent = channel.parent_id if isinstance(channel, discord.Thread) else channel.id
        return await self._webhooks.is_ours(hook, parent)

    def _message_event(self, account: str, message: discord.Message) -> Message | None:
        if message.type not in (discord.MessageType.default, discord.MessageType.reply):
            return None
        author = message.author
        is_bot = author.bot or message.webhook_id is not None
        if is_bot and self._config.ignore_foreign_bots:
            return None
        channel = message.channel
        where = where_of(channel)
        if where.kind == "dm":
            where = Where("dm", None, "dm", account)
        self._channels.where[channel.id] = where
        channel_id, parent, is_post, text = self._place(message, where, is_bot)
        fleet = self._fleet()
        images, files = photos_of(message, fleet.config.llm) if fleet is not None else ((), ())
        if not text.strip() and not is_post and not images and not files:
            return None
        reply_to_id, reply_persona = self._replied(message)
        return Message(
            platform=PLATFORM,
            id=str(message.id),
            channel=str(channel_id),
            author=Author(id=str(author.id), name=author.display_name, is_bot=is_bot, is_admin=_is_admin(message)),
            text=text,
            mentions=self._mentioned(message),
            reply_to_persona=reply_persona,
            reply_to_id=reply_to_id,
            is_dm=where.kind == "dm",
            to_persona=self._accounts.persona_id(account) if where.kind == "dm" else None,
            channel_name=where.name,
            parent_channel=str(parent) if parent else None,
            is_post=is_post,
            images=images,
            files=files,
        )

    def _place(self, message: discord.Message, where: Where, is_bot: bool) -> tuple[int, int | None, bool, str]:
        """The conversation a message belongs to (channel, parent), whether it is a feed post, its text."""
        channel, text = message.channel, message.clean_content
        if where.kind == "thread" and message.id == channel.id and isinstance(channel, discord.Thread):
            if isinstance(channel.parent, discord.ForumChannel):
                # A forum post: its starter message has the thread's id; the title is half the question.
                text = f"{channel.name}\n\n{text}".strip() if channel.name not in text else text
                return channel.id, where.parent, True, text
        elif (
            where.kind == "text" and not is_bot and message.reference is None and self._feeds.is_feed(channel.id, where)
        ):
            # A photo-only post's thread is named after the photo's alt text, if it has one.
            self._feeds.add_post(message.id, channel.id, where, text or photo_title(message))
            return message.id, channel.id, True, text
        return channel.id, where.parent, False, text

    def _mentioned(self, message: discord.Message) -> frozenset[str]:
        of_user = self._accounts.persona_of_user
        found = {of_user[u.id] for u in message.mentions if u.id in of_user}
        for role in message.role_mentions:
            # Picking a bot in the mention menu sometimes inserts its managed role instead of the user.
            bot_id = role.tags.bot_id if role.tags else None
            if bot_id is not None and bot_id in of_user:
                found.add(of_user[bot_id])
        return frozenset(found)

    def _replied(self, message: discord.Message) -> tuple[str | None, str | None]:
        ref = message.reference
        if ref is None or ref.message_id is None:
            return None, None
        fleet = self._fleet()
        persona = fleet.persona_of(PLATFORM, str(ref.message_id)) if fleet else None
        resolved = ref.resolved
        if persona is None and isinstance(resolved, discord.Message):
            of_user = self._accounts.persona_of_user
            if resolved.author.id in of_user:
                persona = of_user[resolved.author.id]
            elif resolved.webhook_id is not None and resolved.webhook_id in self._webhooks.ours:
                persona = self._persona_named(resolved.author.name)
        return str(ref.message_id), persona

    def _persona_named(self, username: str) -> str | None:
        return next((p.id for p in self._personas() if webhook_username(p.name, p.id) == username), None)


def _is_admin(message: discord.Message) -> bool:
    author = message.author
    if not isinstance(author, discord.Member):
        return False
    try:
        return message.channel.permissions_for(author).manage_messages
    except (AttributeError, TypeError):
        return author.guild_permissions.manage_messages
