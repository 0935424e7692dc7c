"""What humans write, as fleet events: Telegram updates become Message and Command events with
the fleet's ids, mentions and replies resolved to personas, and admin rights checked for the
commands that need them."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import replace

from telegram import Message as TgMessage
from telegram import MessageEntity, Update
from telegram.constants import ChatMemberStatus, ChatType
from telegram.error import TelegramError

from adapters.telegram.lanes import Lanes
from adapters.telegram.photos import photos_of
from adapters.telegram.places import PLATFORM, Place
from adapters.telegram.roster import BotAccount, Roster
from bots.core.commands import COMMANDS, closest_command
from bots.core.events import Author, Command, Message
from bots.core.ports import FleetView

log = logging.getLogger("botfleet.telegram")

ADMIN_TTL = 300.0
MAX_POSTS = 10_000  # channel posts remembered for their comment threads
MAX_ALBUMS = 1000  # recent albums (media groups), remembered so an album is one post


def author_of(msg: TgMessage) -> Author:
    if msg.sender_chat is not None:  # anonymous admins, channels and their automatic forwards
        chat = msg.sender_chat
        return Author(id=f"chat{chat.id}", name=chat.title or chat.username or "channel")
    user = msg.from_user
    if user is None:
        return Author(id="unknown", name="someone")
    return Author(id=str(user.id), name=user.full_name, is_bot=user.is_bot)


def parse_command(msg: TgMessage) -> tuple[str, str, str] | None:
    """(name, lowercased target bot or "", args) of a message that starts with a bot_command entity."""
    text = msg.text or ""
    for entity in msg.entities:
        if entity.type == MessageEntity.BOT_COMMAND and entity.offset == 0:
            word = msg.parse_entity(entity)
            name, _, target = word[1:].partition("@")
            return name.lower(), target.lower(), text[len(word) :].strip()
    return None


class Inbound:
    def __init__(self, fleet: FleetView, roster: Roster, lanes: Lanes) -> None:
        self.fleet = fleet
        self.roster = roster
        self.lanes = lanes
        self._admins: dict[tuple[int, int], tuple[asyncio.Task[bool | None], float]] = {}
        # (discussion group, message) of channel posts' automatic copies -> the channel: comment threads.
        self._posts: OrderedDict[tuple[int, int], str] = OrderedDict()
        # media_group_id -> the message that opened it: Telegram sends an album one message per photo.
        self._albums: OrderedDict[str, tuple[int, int]] = OrderedDict()

    async def receive(self, bot: BotAccount, update: Update) -> None:
        msg = update.message
        if msg is None:
            return
        try:
            self.roster.seen(bot, msg.chat.id)
            self.lanes.heard_from(bot, msg.chat.id)
            if msg.from_user is not None and self.roster.by_user_id(msg.from_user.id) is not None:
                return  # one of ours (Bot-to-Bot mode): the fleet fed it back when it was sent
            event = await self._event(bot, msg, *self._where(bot, msg))
            if event is not None:
                await self.fleet.dispatch(event)
        except Exception:
            log.exception("telegram: %s could not handle message %s", bot.label, msg.message_id)

    def _where(self, bot: BotAccount, msg: TgMessage) -> tuple[Place, str | None]:
        """The place of a message, and the channel whose settings apply there (parent_channel)."""
        chat = msg.chat
        if chat.type == ChatType.PRIVATE:
            return Place(chat.id, bot.account), None
        if msg.is_automatic_forward:
            # A channel post's copy in its discussion group: the comments under it are a thread of it.
            channel = str(msg.sender_chat.id if msg.sender_chat else chat.id)
            self._posts[(chat.id, msg.message_id)] = channel
            while len(self._posts) > MAX_POSTS:
                self._posts.popitem(last=False)
            return Place(chat.id, thread=msg.message_id), channel
        thread = msg.message_thread_id
        if thread and (chat.id, thread) in self._posts:
            return Place(chat.id, thread=thread), self._posts[(chat.id, thread)]
        # Only forum topics: Telegram also numbers plain reply chains as threads, which are no conversation.
        if thread and msg.is_topic_message:
            return Place(chat.id, thread=thread), str(chat.id)
        return Place(chat.id), None

    async def _event(
        self, bot: BotAccount, msg: TgMessage, place: Place, parent: str | None
    ) -> Message | Command | None:
        command = parse_command(msg)
        if command is not None:
            name, target, args = command
            if target and self.roster.by_username(target) is None:
                return None  # addressed to a bot that is not ours
            if name not in COMMANDS and not target and not place.is_private and closest_command(name) is None:
                # A bare /weather in a group reaches every bot: it is most likely another bot's command,
                # and answering each one with "unknown command" would be noise. A near miss (/pannel) is ours.
                return None
            return await self._command(bot, msg, place, parent, name, target, args)
        text = msg.text or msg.caption or ""
        images, files = photos_of(msg, bot.account, self.fleet.config.llm)
        if not text.strip() and not images and not files:
            return None
        return replace(self._message(bot, msg, place, parent, text), images=images, files=files)

    def _message(self, bot: BotAccount, msg: TgMessage, place: Place, parent: str | None, text: str) -> Message:
        reply_persona, reply_id = self._replied(msg, place)
        return Message(
            platform=PLATFORM,
            id=place.message_id(msg.message_id),
            channel=place.channel,
            author=author_of(msg),
            text=text,
            mentions=self._mentions(msg),
            reply_to_persona=reply_persona,
            reply_to_id=reply_id,
            is_dm=place.is_private,
            to_persona=bot.persona_id if place.is_private else None,
            channel_name=msg.chat.title or msg.chat.username or "",
            parent_channel=parent,
            is_post=(bool(msg.is_automatic_forward) or self._topic_post(msg, place)) and self._opens_album(msg),
        )

    def _opens_album(self, msg: TgMessage) -> bool:
        """Whether msg is not part of an album, or is its first message: an album is one post, so its
        followers comment once (on the first photo), not once per photo."""
        group = msg.media_group_id
        if group is None:
            return True
        first = self._albums.setdefault(group, (msg.chat.id, msg.message_id))
        while len(self._albums) > MAX_ALBUMS:
            self._albums.popitem(last=False)
        return first == (msg.chat.id, msg.message_id)

    def _topic_post(self, msg: TgMessage, place: Place) -> bool:
        """In a forum topic configured as a feed, a message that answers nobody in particular is a post
        (inside a topic, Telegram makes plain messages replies to the topic's opening message)."""
        if place.thread is None or not msg.is_topic_message:
            return False
        if self.fleet.config.feeds.find(PLATFORM, (place.channel,)) is None:
            return False
        replied = msg.reply_to_message
        return replied is None or replied.message_id == place.thread

    async def _command(
        self, bot: BotAccount, msg: TgMessage, place: Place, parent: str | None, name: str, target: str, args: str
    ) -> Command:
        name = "help" if name == "start" else name  # /start is what a new DM sends first
        author = author_of(msg)
        spec = COMMANDS.get(name)
        if spec is not None and spec.admin:
            author = Author(author.id, author.name, author.is_bot, is_admin=await self._is_admin(bot, msg))
        addressed = self.roster.by_username(target) if target else None
        replied = msg.reply_to_message
        return Command(
            platform=PLATFORM,
            id=place.message_id(msg.message_id),
            channel=place.channel,
            author=author,
            name=name,
            args=args,
            persona=addressed.persona_id if addressed else None,
            is_dm=place.is_private,
            channel_name=msg.chat.title or msg.chat.username or "",
            parent_channel=parent,
            reply_to_id=place.message_id(replied.message_id) if replied else None,
        )

    def _mentions(self, msg: TgMessage) -> frozenset[str]:
        kinds: list[str | None] = [MessageEntity.MENTION, MessageEntity.TEXT_MENTION]
        found: set[str] = set()
        for entity, value in {**msg.parse_entities(kinds), **msg.parse_caption_entities(kinds)}.items():
            if entity.type == MessageEntity.MENTION:
                bot = self.roster.by_username(value.removeprefix("@"))
            else:
                bot = self.roster.by_user_id(entity.user.id) if entity.user else None
            if bot is not None and bot.persona_id is not None:
                found.add(bot.persona_id)
        return frozenset(found)

    def _replied(self, msg: TgMessage, place: Place) -> tuple[str | None, str | None]:
        target = msg.reply_to_message
        if target is None:
            return None, None
        reply_id = place.message_id(target.message_id)
        owner = self.roster.by_user_id(target.from_user.id) if target.from_user else None
        if owner is None:
            return None, reply_id
        # The host bot speaks for many personas: only the fleet knows which one wrote that message.
        return self.fleet.persona_of(PLATFORM, reply_id) or owner.persona_id, reply_id

    async def _is_admin(self, bot: BotAccount, msg: TgMessage) -> bool:
        chat = msg.chat
        if chat.type == ChatType.PRIVATE:
            return True  # one's own private chat
        if msg.sender_chat is not None:
            return msg.sender_chat.id == chat.id  # anonymous admins post as the group itself
        if msg.from_user is None:
            return False
        key = (chat.id, msg.from_user.id)
        now = self.fleet.clock()
        cached = self._admins.get(key)
        if cached is None or cached[1] <= now:
            # One getChatMember even when several bots receive the same /mute at once.
            cached = (asyncio.ensure_future(self._ask_admin(bot, *key)), now + ADMIN_TTL)
            self._admins[key] = cached
        verdict = await cached[0]
        if verdict is None:
            self._admins.pop(key, None)  # unknown: ask again next time
        return bool(verdict)

    async def _ask_admin(self, bot: BotAccount, chat_id: int, user_id: int) -> bool | None:
        assert bot.app is not None
        try:
            member = await bot.app.bot.get_chat_member(chat_id, user_id)
        except TelegramError as exc:
            log.warning("telegram: %s could not check admin rights in %s: %s", bot.label, chat_id, exc)
            return None
        return member.status in (ChatMemberStatus.ADMINISTRATOR, ChatMemberStatus.OWNER)
