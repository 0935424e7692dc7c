"""Telegram through python-telegram-bot 22: one Application per bot token, all in the fleet's event loop.

A persona with `platforms.telegram.token` is its own bot; every other persona speaks through the host
bot (`adapters.telegram.token`) with its name in bold. Bots never see each other's messages, so the
fleet feeds its own sends back as turns (Fleet.feed_back); this adapter only turns what humans write
into events and carries replies, reactions and notices out, within Telegram's flood limits.

Ids: a group's channel is its chat id; a private chat's is "<user id>@<bot>" (the same user has a
separate chat with every bot). A message id is "<channel>:<message number>", the same for every bot
that receives it, so the core handles a message seen by several bots once.
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
import warnings
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import Any, TypeAlias, TypeVar

from telegram import BotCommand, MessageEntity, ReplyParameters, Update, User
from telegram import Message as TgMessage
from telegram.constants import ChatAction, ChatMemberStatus, ChatType, ParseMode
from telegram.error import BadRequest, Forbidden, InvalidToken, RetryAfter, TelegramError
from telegram.ext import AIORateLimiter, Application, ApplicationBuilder, ContextTypes, MessageHandler, filters

from adapters.telegram.emoji import ALLOWED as ALLOWED_REACTIONS
from bots.config import TelegramConfig
from bots.core.brain import IncompleteReply
from bots.core.commands import COMMANDS
from bots.core.events import Author, Command, Message, Notice, React, Reply, Sent
from bots.core.ports import FleetView, LLMError
from bots.core.text import split_text
from bots.persona import Persona

log = logging.getLogger("botfleet.telegram")

App: TypeAlias = Application[Any, Any, Any, Any, Any, Any]
T = TypeVar("T")

PLATFORM = "telegram"
HOST = "host"
TEXT_LIMIT = 4096
PACE_SECONDS = 1.0  # Telegram: about one message per second per chat
TYPING_EVERY = 4.0  # a typing action shows for about 5 s
EDIT_EVERY_GROUP = 3.0  # edits spend the group's 20-per-minute budget
EDIT_EVERY_PRIVATE = 1.0
POLL_TIMEOUT = 10.0
ADMIN_TTL = 300.0
FLOOD_ATTEMPTS = 4  # 429s in a row before a message is given up
WRITING = " …"
CUT_OFF = " … (cut off)"
ADMIN_COMMANDS = frozenset({"mute", "unmute"})


def account_of(persona_id: str | None) -> str:
    return f"{PLATFORM}:{persona_id or HOST}"


# --- logs must never carry a token ------------------------------------------------------------------


class TokenRedactor(logging.Filter):
    """Blanks bot tokens out of log records.

    PTB puts the token in request URLs (which httpx logs) and in InvalidToken's message; a record
    can reach a handler with it from any logger, so this sits on the root handlers, and on the
    loggers known to carry URLs so that the record itself is cleaned before any handler sees it.
    """

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None

    def add(self, token: str) -> None:
        # The part after ":" is the secret; the bot id before it is public and useful in logs.
        secret = token.partition(":")[2] or token
        if secret and secret not in self._secrets:
            self._secrets.add(secret)
            ordered = sorted(self._secrets, key=len, reverse=True)
            self._pattern = re.compile("|".join(map(re.escape, ordered)))

    def redact(self, text: str) -> str:
        return self._pattern.sub("<redacted>", text) if self._pattern else text

    def filter(self, record: logging.LogRecord) -> bool:
        if self._pattern is None:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is the logging module's business, not ours
            return True
        if self._pattern.search(message):
            record.msg, record.args = self.redact(message), None
        if record.exc_info and not record.exc_text:
            text = logging.Formatter().formatException(record.exc_info)
            if self._pattern.search(text):
                record.exc_text = self.redact(text)
        elif record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


class _DropHandled429(logging.Filter):
    """AIORateLimiter logs every re-raised 429 as an error with a traceback; this adapter handles it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Rate limit hit after maximum of")


# Process-wide: tokens are added and never removed, so a late log line cannot leak a stopped bot's token.
REDACTOR = TokenRedactor()
_HANDLED_429 = _DropHandled429()
_TOKEN_LOGGERS = (
    "httpx",
    "httpcore",
    "telegram",
    "telegram.Bot",
    "telegram.ext",
    "telegram.ext.ExtBot",
    "telegram.ext.Application",
    "telegram.ext.Updater",
    "telegram.ext.AIORateLimiter",
    "telegram.request.BaseRequest",
    "telegram.request.HTTPXRequest",
    "asyncio",
)


def install_log_guards(tokens: Sequence[str]) -> None:
    for token in tokens:
        REDACTOR.add(token)
    for handler in logging.getLogger().handlers:
        handler.addFilter(REDACTOR)  # addFilter ignores a filter already there
    for name in _TOKEN_LOGGERS:
        logging.getLogger(name).addFilter(REDACTOR)
    for name in ("httpx", "httpcore"):
        quiet = logging.getLogger(name)
        if quiet.level < logging.WARNING:
            quiet.setLevel(logging.WARNING)
    logging.getLogger("telegram.ext.AIORateLimiter").addFilter(_HANDLED_429)


# --- places and ids ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Place:
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

    @classmethod
    def parse(cls, channel: str) -> _Place:
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


def _utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _chunks(text: str, room: int) -> list[str]:
    """split_text counts characters, Telegram counts UTF-16 units: re-split what emoji pushed over."""
    out: list[str] = []
    for chunk in split_text(text, room):
        out.extend([chunk] if _utf16(chunk) <= room else split_text(chunk, room // 2))
    return out


def _retry_seconds(exc: RetryAfter) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 22.x warns that retry_after will become a timedelta
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _anchor(place: _Place, reply_to: int | None, previous: int | None, n: int) -> int | None:
    """What part n of a text replies to: the first part to the message answered; in a thread the
    rest to the part before, since a message that replies to nothing would land outside the thread."""
    if n == 0:
        return reply_to
    return previous if place.thread else None


def _reply_to(number: int | None) -> ReplyParameters | None:
    # The message may be gone by the time a reply is written; post anyway rather than fail.
    return None if number is None else ReplyParameters(number, allow_sending_without_reply=True)


async def _close(snapshots: AsyncIterator[str]) -> None:
    aclose = getattr(snapshots, "aclose", None)
    if aclose is not None:
        await aclose()


# --- per-bot and per-chat state ------------------------------------------------------------------------


@dataclass(eq=False)
class _Bot:
    account: str
    persona_id: str | None  # None: the host bot
    token: str
    app: App | None = None
    user_id: int = 0
    username: str = ""

    @property
    def ready(self) -> bool:
        """initialize() succeeded, so it can send (receiving is separate: connect)."""
        return self.app is not None

    @property
    def label(self) -> str:
        return f"@{self.username} ({self.account})" if self.username else self.account


@dataclass(eq=False)
class _Lane:
    """One bot in one chat: Telegram's flood limits and bans apply per bot and chat."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    ready_at: float = 0.0  # loop time before which this bot must not post here (pacing or 429)
    paused_until: float = 0.0  # the 429 part of it: typing waits for this, not for pacing
    forbidden: bool = False


class TelegramAdapter:
    platform = PLATFORM
    text_limit = TEXT_LIMIT

    def __init__(self, config: TelegramConfig, personas: Sequence[Persona]) -> None:
        self.config = config
        self._bots: dict[str, _Bot] = {}
        if config.token:
            self._bots[account_of(None)] = _Bot(account_of(None), None, config.token)
        self._voiceless: list[str] = []
        for p in personas:
            token = p.platforms.telegram.token if p.platforms.telegram else ""
            if not token:
                self._voiceless.append(p.id)
            elif p.id == HOST:
                log.error("telegram: persona id %r clashes with the host bot's account; its token is ignored", HOST)
            else:
                self._bots[account_of(p.id)] = _Bot(account_of(p.id), p.id, token)
        self._fleet: FleetView | None = None
        self._by_user_id: dict[int, _Bot] = {}
        self._by_username: dict[str, _Bot] = {}
        self._lanes: dict[tuple[str, int], _Lane] = {}
        # Bots known to be in a chat (they received something there), in order of arrival.
        self._present: dict[int, dict[str, None]] = {}
        self._admins: dict[tuple[int, int], tuple[asyncio.Task[bool | None], float]] = {}
        # (discussion group, message) of channel posts' automatic copies -> the channel: comment threads.
        self._posts: OrderedDict[tuple[int, int], str] = OrderedDict()
        self._bad_emoji: set[str] = set()

    # --- lifecycle ----------------------------------------------------------------------------------

    def accounts(self) -> list[str]:
        return list(self._bots)

    async def start(self, fleet: FleetView) -> None:
        self._fleet = fleet
        install_log_guards([b.token for b in self._bots.values()])
        await asyncio.gather(*(self._open(bot) for bot in self._bots.values()))
        host = self._bots.get(account_of(None))
        if self._voiceless and (host is None or not host.ready):
            log.warning(
                "telegram: no working host bot (adapters.telegram.token), so %s cannot speak on Telegram",
                ", ".join(self._voiceless),
            )

    def _build(self, bot: _Bot) -> App:
        builder = ApplicationBuilder().token(bot.token).rate_limiter(AIORateLimiter())
        if self.config.base_url:
            api = self.config.base_url.rstrip("/")
            api = api if api.endswith("/bot") else api + "/bot"
            builder = builder.base_url(api).base_file_url(api.removesuffix("/bot") + "/file/bot")
        app: App = builder.build()

        async def on_message(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
            await self._receive(bot, update)

        app.add_handler(MessageHandler(filters.UpdateType.MESSAGE, on_message))
        return app

    async def _open(self, bot: _Bot) -> None:
        """initialize() one bot: a rejected token takes that bot out, never the fleet."""
        app = self._build(bot)
        where = "adapters.telegram.token" if bot.persona_id is None else "platforms.telegram.token"
        try:
            await app.initialize()
        except InvalidToken:
            log.error(
                "telegram: %s: Telegram rejected the bot token (check %s); this bot stays offline, "
                "the rest of the fleet runs on",
                bot.account,
                where,
            )
            await app.bot.shutdown()  # initialize() opened its HTTP clients before getMe failed
            return
        except TelegramError as exc:
            log.error("telegram: %s could not start (%s); this bot stays offline", bot.account, exc)
            await app.bot.shutdown()
            return
        me: User = app.bot.bot
        bot.app, bot.user_id, bot.username = app, me.id, me.username or ""
        self._by_user_id[me.id] = bot
        self._by_username[bot.username.lower()] = bot
        self._log_privacy(bot, me)
        await self._register_commands(bot)

    def _log_privacy(self, bot: _Bot, me: User) -> None:
        if me.can_read_all_group_messages:
            log.info("telegram: %s reads every group message (privacy mode off)", bot.label)
        else:
            log.info(
                "telegram: %s has privacy mode on: in groups it sees only commands, @mentions and replies "
                "to its own messages (unless it is an admin there); keyword, name and free-will triggers "
                "need /setprivacy -> Disable in @BotFather or admin rights",
                bot.label,
            )

    async def _register_commands(self, bot: _Bot) -> None:
        assert bot.app is not None
        commands = [BotCommand(name, spec.help[:256]) for name, spec in COMMANDS.items()]
        try:
            await bot.app.bot.set_my_commands(commands)
        except TelegramError as exc:
            log.warning("telegram: %s could not register its commands: %s", bot.label, exc)

    async def connect(self, account: str) -> bool:
        bot = self._bots.get(account)
        if bot is None or bot.app is None or bot.app.updater is None:
            return False
        if bot.app.updater.running:
            return True
        try:
            await bot.app.updater.start_polling(
                poll_interval=0.0,
                timeout=POLL_TIMEOUT,
                allowed_updates=[Update.MESSAGE],
                error_callback=partial(self._polling_failed, bot),
            )
            await bot.app.start()
        except TelegramError as exc:
            log.error("telegram: %s could not start receiving: %s", bot.label, exc)
            return False
        log.info("telegram: %s receiving", bot.label)
        return True

    def _polling_failed(self, bot: _Bot, exc: TelegramError) -> None:
        log.warning("telegram: %s polling failed, retrying: %s", bot.label, exc)

    async def disconnect(self, account: str) -> None:
        bot = self._bots.get(account)
        if bot is not None and bot.app is not None:
            await self._stop_receiving(bot.app)

    async def _stop_receiving(self, app: App) -> None:
        if app.updater is not None and app.updater.running:
            await app.updater.stop()
        if app.running:
            await app.stop()

    async def stop(self) -> None:
        await asyncio.gather(*(self._shut(bot) for bot in self._bots.values()))

    async def _shut(self, bot: _Bot) -> None:
        app, bot.app = bot.app, None
        if app is None:
            return
        try:
            await self._stop_receiving(app)
            await app.shutdown()
        except Exception:
            log.exception("telegram: stopping %s failed", bot.label)

    # --- receiving ----------------------------------------------------------------------------------

    async def _receive(self, bot: _Bot, update: Update) -> None:
        msg = update.message
        if msg is None or self._fleet is None:
            return
        try:
            self._arrived(bot, msg)
            if msg.from_user is not None and msg.from_user.id in self._by_user_id:
                return  # one of ours (Bot-to-Bot mode): the fleet fed it back when it was sent
            event = await self._event(bot, msg, *self._where(bot, msg))
            if event is not None:
                await self._fleet.dispatch(event)
        except Exception:
            log.exception("telegram: %s could not handle message %s", bot.label, msg.message_id)

    def _arrived(self, bot: _Bot, msg: TgMessage) -> None:
        chat_id = msg.chat.id
        self._present.setdefault(chat_id, {})[bot.account] = None
        lane = self._lanes.get((bot.account, chat_id))
        if lane is not None:
            lane.forbidden = False  # it hears from the chat again: re-added, or unblocked

    def _where(self, bot: _Bot, msg: TgMessage) -> tuple[_Place, str | None]:
        """The place of a message, and the channel whose settings apply there (parent_channel)."""
        chat = msg.chat
        if chat.type == ChatType.PRIVATE:
            return _Place(chat.id, bot.account), None
        if msg.is_automatic_forward:
            # A channel post's copy in its discussion group: the comments under it are a thread of it.
            channel = str(msg.sender_chat.id if msg.sender_chat else chat.id)
            self._posts[(chat.id, msg.message_id)] = channel
            while len(self._posts) > 10_000:
                self._posts.popitem(last=False)
            return _Place(chat.id, thread=msg.message_id), channel
        thread = msg.message_thread_id
        if thread and (chat.id, thread) in self._posts:
            return _Place(chat.id, thread=thread), self._posts[(chat.id, thread)]
        # Only forum topics: Telegram also numbers plain reply chains as threads, which are no conversation.
        if thread and msg.is_topic_message:
            return _Place(chat.id, thread=thread), str(chat.id)
        return _Place(chat.id), None

    async def _event(self, bot: _Bot, msg: TgMessage, place: _Place, parent: str | None) -> Message | Command | None:
        command = _parse_command(msg)
        if command is not None:
            name, target, args = command
            if target and target not in self._by_username:
                return None  # addressed to a bot that is not ours
            return await self._command(bot, msg, place, parent, name, target, args)
        text = msg.text or msg.caption or ""
        if not text.strip():
            return None
        reply_persona, reply_id = self._replied(msg, place)
        is_dm = place.dm_account is not None
        return Message(
            platform=PLATFORM,
            id=place.message_id(msg.message_id),
            channel=place.channel,
            author=_author(msg),
            text=text,
            mentions=self._mentions(msg),
            reply_to_persona=reply_persona,
            reply_to_id=reply_id,
            is_dm=is_dm,
            to_persona=bot.persona_id if is_dm else None,
            channel_name=msg.chat.title or msg.chat.username or "",
            parent_channel=parent,
            is_post=bool(msg.is_automatic_forward) or self._topic_post(msg, place),
        )

    def _topic_post(self, msg: TgMessage, place: _Place) -> bool:
        """In a forum topic configured as a feed, a message that answers nobody in particular is a post
        (inside a topic, Telegram makes plain messages replies to the topic's opening message)."""
        if place.thread is None or not msg.is_topic_message or self._fleet is None:
            return False
        if self._fleet.config.feeds.find(PLATFORM, (place.channel,)) is None:
            return False
        replied = msg.reply_to_message
        return replied is None or replied.message_id == place.thread

    async def _command(
        self, bot: _Bot, msg: TgMessage, place: _Place, parent: str | None, name: str, target: str, args: str
    ) -> Command:
        name = "help" if name == "start" else name  # /start is what a new DM sends first
        author = _author(msg)
        if name in ADMIN_COMMANDS:
            author = Author(author.id, author.name, author.is_bot, is_admin=await self._is_admin(bot, msg))
        addressed = self._by_username[target].persona_id if target else None
        replied = msg.reply_to_message
        return Command(
            platform=PLATFORM,
            id=place.message_id(msg.message_id),
            channel=place.channel,
            author=author,
            name=name,
            args=args,
            persona=addressed,
            is_dm=place.dm_account is not None,
            channel_name=msg.chat.title or msg.chat.username or "",
            parent_channel=parent,
            reply_to_id=place.message_id(replied.message_id) if replied else None,
        )

    def _mentions(self, msg: TgMessage) -> frozenset[str]:
        kinds = [MessageEntity.MENTION, MessageEntity.TEXT_MENTION]
        found: set[str] = set()
        for entity, value in {**msg.parse_entities(kinds), **msg.parse_caption_entities(kinds)}.items():
            if entity.type == MessageEntity.MENTION:
                bot = self._by_username.get(value.removeprefix("@").lower())
            else:
                bot = self._by_user_id.get(entity.user.id) if entity.user else None
            if bot is not None and bot.persona_id is not None:
                found.add(bot.persona_id)
        return frozenset(found)

    def _replied(self, msg: TgMessage, place: _Place) -> tuple[str | None, str | None]:
        target = msg.reply_to_message
        if target is None:
            return None, None
        reply_id = place.message_id(target.message_id)
        owner = self._by_user_id.get(target.from_user.id) if target.from_user else None
        if owner is None:
            return None, reply_id
        # The host bot speaks for many personas: only the fleet knows which one wrote that message.
        written_by = self._fleet.persona_of(PLATFORM, reply_id) if self._fleet else None
        return written_by or owner.persona_id, reply_id

    async def _is_admin(self, bot: _Bot, msg: TgMessage) -> bool:
        chat = msg.chat
        if chat.type == ChatType.PRIVATE:
            return True  # one's own private chat
        if msg.sender_chat is not None:
            return msg.sender_chat.id == chat.id  # anonymous admins post as the group itself
        if msg.from_user is None:
            return False
        key = (chat.id, msg.from_user.id)
        now = asyncio.get_running_loop().time()
        cached = self._admins.get(key)
        if cached is None or cached[1] <= now:
            # One getChatMember even when several bots receive the same /mute at once.
            cached = (asyncio.ensure_future(self._ask_admin(bot, *key)), now + ADMIN_TTL)
            self._admins[key] = cached
        verdict = await cached[0]
        if verdict is None:
            self._admins.pop(key, None)  # unknown: ask again next time
        return bool(verdict)

    async def _ask_admin(self, bot: _Bot, chat_id: int, user_id: int) -> bool | None:
        assert bot.app is not None
        try:
            member = await bot.app.bot.get_chat_member(chat_id, user_id)
        except TelegramError as exc:
            log.warning("telegram: %s could not check admin rights in %s: %s", bot.label, chat_id, exc)
            return None
        return member.status in (ChatMemberStatus.ADMINISTRATOR, ChatMemberStatus.OWNER)

    # --- choosing a bot and pacing it ---------------------------------------------------------------

    def _ready(self, account: str | None) -> _Bot | None:
        bot = self._bots.get(account) if account else None
        return bot if bot is not None and bot.ready else None

    def _voice(self, persona_id: str, place: _Place) -> _Bot | None:
        """The bot that speaks (or reacts) for a persona here."""
        if place.dm_account is not None:
            return self._ready(place.dm_account)  # a private chat has exactly one bot in it
        own = self._bots.get(account_of(persona_id))
        if own is not None:
            # A rejected token silences its persona instead of hiding the error behind the host bot.
            return own if own.ready else None
        return self._ready(account_of(None))

    def _notice_bots(self, place: _Place) -> list[_Bot]:
        """Who may post the fleet's own messages here, best first."""
        if place.dm_account is not None:
            bot = self._ready(place.dm_account)
            return [bot] if bot else []
        host = self._ready(account_of(None))
        present = [
            b
            for a in self._present.get(place.chat_id, {})
            if (b := self._ready(a)) is not None and b.persona_id is not None
        ]
        if host is not None or present:
            return ([host] if host else []) + present
        return [b for b in self._bots.values() if b.ready]

    def _lane(self, bot: _Bot, chat_id: int) -> _Lane:
        key = (bot.account, chat_id)
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane()
        return lane

    def _forbid(self, bot: _Bot, lane: _Lane, chat_id: int, exc: Forbidden) -> None:
        if not lane.forbidden:
            lane.forbidden = True
            # A user who never opened a DM is routine (private notices fall back to the chat); a group
            # that removed the bot is worth a warning.
            log.log(
                logging.INFO if chat_id > 0 else logging.WARNING,
                "telegram: %s may not post in chat %s (%s); skipping that chat until it hears from it again",
                bot.label,
                chat_id,
                exc.message,
            )

    async def _call(
        self, bot: _Bot, lane: _Lane, chat_id: int, make: Callable[[], Awaitable[T]], *, pace: bool
    ) -> T | None:
        """One Bot API call within the lane's limits; None when the chat is closed to this bot.

        A 429 means Telegram did not take the request, so it is made again after retry_after: the
        message then exists once. Anything else (a timeout, say) may have gone through: no retry.
        """
        loop = asyncio.get_running_loop()
        async with lane.lock:
            for _ in range(FLOOD_ATTEMPTS):
                if lane.forbidden:
                    return None
                wait = lane.ready_at - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                try:
                    result = await make()
                except RetryAfter as exc:
                    seconds = _retry_seconds(exc)
                    lane.ready_at = lane.paused_until = loop.time() + seconds
                    log.warning(
                        "telegram: %s hit flood control in chat %s; pausing there for %.0f s",
                        bot.label,
                        chat_id,
                        seconds,
                    )
                    continue
                except Forbidden as exc:
                    self._forbid(bot, lane, chat_id, exc)
                    return None
                if pace:
                    lane.ready_at = loop.time() + PACE_SECONDS
                return result
        log.warning("telegram: %s gave up on chat %s after repeated flood control", bot.label, chat_id)
        return None

    async def _typing(self, bot: _Bot, lane: _Lane, place: _Place) -> bool:
        """One typing action; False when the chat is closed to the bot, so nothing is worth writing."""
        assert bot.app is not None
        loop = asyncio.get_running_loop()
        chat_id = place.chat_id
        if lane.forbidden:
            return False
        if loop.time() < lane.paused_until:
            return True  # paused by flood control: do not spend the budget on typing
        try:
            await bot.app.bot.send_chat_action(chat_id, ChatAction.TYPING, message_thread_id=place.thread)
        except Forbidden as exc:
            self._forbid(bot, lane, chat_id, exc)
            return False
        except RetryAfter as exc:
            lane.paused_until = loop.time() + _retry_seconds(exc)
            lane.ready_at = max(lane.ready_at, lane.paused_until)
        except TelegramError as exc:
            log.debug("telegram: typing in %s failed: %s", chat_id, exc)
        return True

    async def _keep_typing(self, bot: _Bot, lane: _Lane, place: _Place) -> None:
        while True:
            await asyncio.sleep(TYPING_EVERY)
            if not await self._typing(bot, lane, place):
                return

    # --- sending ------------------------------------------------------------------------------------

    async def deliver(self, reply: Reply, persona: Persona, snapshots: AsyncIterator[str]) -> Sent:
        place = _Place.parse(reply.channel)
        bot = self._voice(persona.id, place)
        if bot is None:
            log.debug("telegram: no bot can speak for %s in %s", persona.id, reply.channel)
            return Sent()
        lane = self._lane(bot, place.chat_id)
        # Typing first: a chat that has thrown the bot out is found before the model is paid to write.
        if not await self._typing(bot, lane, place):
            return Sent()
        post = _Post(self, bot, lane, place, persona, place.number(reply.reply_to))
        typing = asyncio.create_task(self._keep_typing(bot, lane, place))
        try:
            return await self._write(post, snapshots, typing)
        finally:
            typing.cancel()
            await _close(snapshots)

    async def _write(self, post: _Post, snapshots: AsyncIterator[str], typing: asyncio.Task[None]) -> Sent:
        text = ""
        try:
            async for text in snapshots:
                if self.config.stream_edits:
                    await post.show(text, WRITING, throttle=True)
                    if post.ids:
                        typing.cancel()
                    if post.failed:
                        return post.result(text, complete=False)
        except IncompleteReply as cut:
            # Whatever is on screen must not pass for a finished reply.
            await post.show(cut.partial or text, CUT_OFF, throttle=False, grow=False)
            log.warning("telegram: reply by %s was cut off (the model stopped without finishing)", post.persona.id)
            return post.result(cut.partial, complete=False)
        except LLMError:
            await post.show(text, CUT_OFF, throttle=False, grow=False)
            raise
        typing.cancel()
        await post.show(text, "", throttle=False)
        return post.result(text, complete=not post.failed)

    async def react(self, react: React, persona: Persona) -> None:
        if react.emoji not in ALLOWED_REACTIONS:
            if react.emoji not in self._bad_emoji:
                self._bad_emoji.add(react.emoji)
                log.warning("telegram: bots may not react with %r (persona %s); `botfleet check` lists the problem",
                            react.emoji, persona.id)  # fmt: skip
            return
        place = _Place.parse(react.channel)
        bot = self._voice(persona.id, place)
        number = place.number(react.message_id)
        if bot is None or bot.app is None or number is None:
            return
        set_reaction = partial(bot.app.bot.set_message_reaction, place.chat_id, number, react.emoji)
        try:
            await self._call(bot, self._lane(bot, place.chat_id), place.chat_id, set_reaction, pace=False)
        except TelegramError as exc:
            log.warning("telegram: %s could not react in %s: %s", bot.label, place.chat_id, exc)

    async def notify(self, notice: Notice) -> None:
        place = _Place.parse(notice.channel)
        chunks = _chunks(notice.text, TEXT_LIMIT)
        bots = self._notice_bots(place)
        if not chunks or not bots:
            return
        to_user = notice.to_user or ""
        # Private answers go by DM when the user has opened one with the bot; else into the chat.
        if notice.private and place.dm_account is None and to_user.isdigit():
            if await self._post_plain(bots[0], _Place(int(to_user), bots[0].account), chunks, None):
                return
        for bot in bots:
            if await self._post_plain(bot, place, chunks, place.number(notice.reply_to)):
                return
        log.warning("telegram: no bot could post the fleet's notice in chat %s", place.chat_id)

    async def _post_plain(self, bot: _Bot, place: _Place, chunks: list[str], reply_to: int | None) -> bool:
        """Fleet text without a parse mode: nothing in it can be mistaken for markup."""
        assert bot.app is not None
        chat_id = place.chat_id
        lane = self._lane(bot, chat_id)
        previous: int | None = None
        for n, chunk in enumerate(chunks):
            send = partial(
                bot.app.bot.send_message,
                chat_id,
                chunk,
                reply_parameters=_reply_to(_anchor(place, reply_to, previous, n)),
                message_thread_id=place.thread,
            )
            try:
                sent = await self._call(bot, lane, chat_id, send, pace=True)
            except TelegramError as exc:
                log.warning("telegram: %s could not post a notice in %s: %s", bot.label, chat_id, exc)
                sent = None
            if sent is None:
                return n > 0  # part of it is out: another bot repeating it would duplicate
            previous = sent.message_id
        return True


def _author(msg: TgMessage) -> Author:
    if msg.sender_chat is not None:  # anonymous admins, channels and their automatic forwards
        chat = msg.sender_chat
        return Author(id=f"chat{chat.id}", name=chat.title or chat.username or "channel")
    user = msg.from_user
    if user is None:
        return Author(id="unknown", name="someone")
    return Author(id=str(user.id), name=user.full_name, is_bot=user.is_bot)


def _parse_command(msg: TgMessage) -> tuple[str, str, str] | None:
    """(name, lowercased target bot or "", args) of a message that starts with a bot_command entity."""
    text = msg.text or ""
    for entity in msg.entities:
        if entity.type == MessageEntity.BOT_COMMAND and entity.offset == 0:
            word = msg.parse_entity(entity)
            name, _, target = word[1:].partition("@")
            return name.lower(), target.lower(), text[len(word) :].strip()
    return None


class _Post:
    """One reply on screen: the messages it spans, kept in step with the text as it grows."""

    def __init__(
        self, adapter: TelegramAdapter, bot: _Bot, lane: _Lane, place: _Place, persona: Persona, reply_to: int | None
    ) -> None:
        self.adapter, self.bot, self.lane, self.place, self.persona = adapter, bot, lane, place, persona
        self.reply_to = reply_to
        speaks_for_others = bot.persona_id != persona.id
        self.prefix_html = f"<b>{html.escape(persona.name, quote=False)}</b>: " if speaks_for_others else ""
        self.prefix_plain = f"{persona.name}: " if speaks_for_others else ""
        # The name and a cut-off marker must fit as well; HTML escapes do not count (the limit
        # applies to the text after entity parsing).
        self.room = TEXT_LIMIT - _utf16(self.prefix_plain) - _utf16(CUT_OFF)
        self.every = EDIT_EVERY_PRIVATE if place.dm_account is not None else EDIT_EVERY_GROUP
        self.ids: list[int] = []
        self.shown: list[str] = []
        self.failed = False
        self._next_edit = 0.0

    def result(self, text: str, *, complete: bool) -> Sent:
        ids = tuple(self.place.message_id(n) for n in self.ids)
        return Sent(message_ids=ids, text=text, complete=complete and bool(ids))

    async def show(self, text: str, suffix: str, *, throttle: bool, grow: bool = True) -> None:
        """Make the messages show text + suffix; `grow=False` only edits what is already there."""
        loop = asyncio.get_running_loop()
        if self.failed or (throttle and self.ids and loop.time() < self._next_edit) or (not grow and not self.ids):
            return
        chunks = _chunks(text, self.room)
        if not grow:
            chunks = chunks[: len(self.ids)]
        if not chunks:
            return
        chunks[-1] += suffix
        try:
            for n, chunk in enumerate(chunks):
                if n < len(self.ids):
                    if self.shown[n] != chunk:
                        await self._edit(n, chunk)
                elif not await self._send(chunk):
                    break
            while len(self.ids) > len(chunks):
                await self._delete_last()  # the text now splits into fewer messages
        except TelegramError as exc:
            self.failed = True
            log.warning("telegram: %s could not post in %s: %s", self.bot.label, self.place.chat_id, exc)
        self._next_edit = loop.time() + self.every

    async def _send(self, chunk: str) -> bool:
        app = self.bot.app
        assert app is not None
        chat = self.place.chat_id
        reply = _reply_to(_anchor(self.place, self.reply_to, self.ids[-1] if self.ids else None, len(self.ids)))
        # A topic's id as well as the reply: a reply to nothing (or to a deleted message) stays in it.
        thread = self.place.thread
        send_html = partial(
            app.bot.send_message, chat, self.prefix_html + html.escape(chunk, quote=False),
            parse_mode=ParseMode.HTML, reply_parameters=reply, message_thread_id=thread,
        )  # fmt: skip
        try:
            sent = await self.adapter._call(self.bot, self.lane, chat, send_html, pace=True)
        except BadRequest as exc:
            if "parse entities" not in exc.message.lower():
                raise
            log.info("telegram: Telegram refused the formatting of a reply; sending it as plain text")
            send_plain = partial(
                app.bot.send_message, chat, self.prefix_plain + chunk, reply_parameters=reply, message_thread_id=thread
            )
            sent = await self.adapter._call(self.bot, self.lane, chat, send_plain, pace=True)
        if sent is None:
            self.failed = True
            return False
        self.ids.append(sent.message_id)
        self.shown.append(chunk)
        return True

    async def _edit(self, n: int, chunk: str) -> None:
        app = self.bot.app
        assert app is not None
        chat, number = self.place.chat_id, self.ids[n]
        edit_html = partial(
            app.bot.edit_message_text, self.prefix_html + html.escape(chunk, quote=False),
            chat_id=chat, message_id=number, parse_mode=ParseMode.HTML,
        )  # fmt: skip
        try:
            await self.adapter._call(self.bot, self.lane, chat, edit_html, pace=False)
        except BadRequest as exc:
            reason = exc.message.lower()
            if "not modified" in reason:
                pass
            elif "parse entities" in reason:
                plain = self.prefix_plain + chunk
                edit_plain = partial(app.bot.edit_message_text, plain, chat_id=chat, message_id=number)
                await self.adapter._call(self.bot, self.lane, chat, edit_plain, pace=False)
            else:
                raise
        self.shown[n] = chunk

    async def _delete_last(self) -> None:
        app = self.bot.app
        assert app is not None
        delete = partial(app.bot.delete_message, self.place.chat_id, self.ids.pop())
        self.shown.pop()
        await self.adapter._call(self.bot, self.lane, self.place.chat_id, delete, pace=False)
