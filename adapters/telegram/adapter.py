"""TelegramAdapter: the Adapter protocol for Telegram, the bots' lifecycle, and the wiring of the
parts (roster, lanes, inbound, outbound). See the package docstring for the whole picture."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from functools import partial

from telegram import Update, User
from telegram.error import InvalidToken, TelegramError
from telegram.ext import AIORateLimiter, ApplicationBuilder, ContextTypes, MessageHandler, filters

from adapters.telegram.inbound import Inbound
from adapters.telegram.lanes import Lanes, Limits
from adapters.telegram.logguard import guard_tokens
from adapters.telegram.menu import register_menus
from adapters.telegram.outbound import Outbound
from adapters.telegram.photos import TelegramPhotos
from adapters.telegram.places import PLATFORM, account_of
from adapters.telegram.post import TEXT_LIMIT
from adapters.telegram.roster import App, BotAccount, Roster
from bots.config import TelegramConfig
from bots.core.events import ImagePart, Notice, React, Reply, Sent
from bots.core.ports import FleetView, ImageUnavailable
from bots.persona import Persona

log = logging.getLogger("botfleet.telegram")

POLL_TIMEOUT = 10  # seconds a getUpdates long poll waits


class TelegramAdapter:
    platform = PLATFORM
    text_limit = TEXT_LIMIT
    # Telegram's flood limits; a harness may scale them (tests do, to keep pacing tests short).
    limits = Limits()

    def __init__(self, config: TelegramConfig, personas: Sequence[Persona]) -> None:
        self.config = config
        self.roster = Roster(config, personas)
        # Wired in start(), once the fleet (and so its clock) is known.
        self._in: Inbound | None = None
        self._out: Outbound | None = None
        self._photos: TelegramPhotos | None = None

    # --- lifecycle ----------------------------------------------------------------------------------

    def accounts(self) -> list[str]:
        return self.roster.accounts()

    def make_application(self, account: str) -> App:
        """The PTB Application (and so the Bot) for one account: the one place either is built.

        Outside test harnesses override this to point bots elsewhere or wrap their requests; the
        adapter adds its update handler to whatever this returns.
        """
        bot = self.roster.get(account)
        if bot is None:
            raise KeyError(f"no Telegram bot for account {account!r}")
        builder = ApplicationBuilder().token(bot.token).rate_limiter(AIORateLimiter())
        if self.config.base_url:
            api = self.config.base_url.rstrip("/")
            api = api if api.endswith("/bot") else api + "/bot"
            builder = builder.base_url(api).base_file_url(api.removesuffix("/bot") + "/file/bot")
        app: App = builder.build()
        return app

    async def start(self, fleet: FleetView) -> None:
        guard_tokens(self.roster.tokens())
        lanes = Lanes(fleet.clock, fleet.sleep, fleet.pacer, self.limits)
        self._in = Inbound(fleet, self.roster, lanes)
        self._out = Outbound(self.roster, lanes, stream_edits=self.config.stream_edits)
        self._photos = TelegramPhotos(self.roster, fleet.config.llm)
        await asyncio.gather(*(self._open(bot, self._in) for bot in self.roster))
        host = self.roster.get(account_of(None))
        if self.roster.voiceless and (host is None or not host.ready):
            log.warning(
                "telegram: no working host bot (adapters.telegram.token), so %s cannot speak on Telegram",
                ", ".join(self.roster.voiceless),
            )

    async def _open(self, bot: BotAccount, inbound: Inbound) -> None:
        """initialize() one bot: a rejected token takes that bot out, never the fleet."""
        app = self.make_application(bot.account)

        async def on_message(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
            await inbound.receive(bot, update)

        app.add_handler(MessageHandler(filters.UpdateType.MESSAGE, on_message))
        try:
            await app.initialize()
        except InvalidToken:
            log.error(
                "telegram: %s: Telegram rejected the bot token (check %s); this bot stays offline, "
                "the rest of the fleet runs on",
                bot.account,
                bot.where,
            )
            await app.bot.shutdown()  # initialize() opened its HTTP clients before getMe failed
            return
        except TelegramError as exc:
            log.error("telegram: %s could not start (%s); this bot stays offline", bot.account, exc)
            await app.bot.shutdown()
            return
        me: User = app.bot.bot
        self.roster.online(bot, app, me)
        self._log_privacy(bot, me)
        await register_menus(bot)

    def _log_privacy(self, bot: BotAccount, me: User) -> None:
        if me.can_read_all_group_messages:
            log.info("telegram: %s reads every group message (privacy mode off)", bot.label)
        else:
            log.info(
                "telegram: %s has privacy mode on: in groups it sees only commands, @mentions and replies "
                "to its own messages (unless it is an admin there); keyword, name and free-will triggers "
                "need /setprivacy -> Disable in @BotFather or admin rights",
                bot.label,
            )

    async def connect(self, account: str) -> bool:
        bot = self.roster.get(account)
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

    def _polling_failed(self, bot: BotAccount, exc: TelegramError) -> None:
        log.warning("telegram: %s polling failed, retrying: %s", bot.label, exc)

    async def disconnect(self, account: str) -> None:
        bot = self.roster.get(account)
        if bot is not None and bot.app is not None:
            await self._stop_receiving(bot.app)

    async def _stop_receiving(self, app: App) -> None:
        if app.updater is not None and app.updater.running:
            await app.updater.stop()
        if app.running:
            await app.stop()

    async def stop(self) -> None:
        await asyncio.gather(*(self._shut(bot) for bot in self.roster))
        if self._photos is not None:
            await self._photos.close()

    async def _shut(self, bot: BotAccount) -> None:
        app, bot.app = bot.app, None
        if app is None:
            return
        try:
            await self._stop_receiving(app)
            await app.shutdown()
        except Exception:
            log.exception("telegram: stopping %s failed", bot.label)

    # --- sending (before start() there is no bot to send with) ------------------------------------

    async def deliver(self, reply: Reply, persona: Persona, snapshots: AsyncIterator[str]) -> Sent:
        if self._out is None:
            return Sent()
        return await self._out.deliver(reply, persona, snapshots)

    async def image_url(self, part: ImagePart, max_side: int) -> str:
        """A photo one of our bots received, as a data URL (the core's ImageSource)."""
        if self._photos is None:
            raise ImageUnavailable("not_started")
        return await self._photos.image_url(part, max_side)

    async def react(self, react: React, persona: Persona) -> None:
        if self._out is not None:
            await self._out.react(react, persona)

    async def notify(self, notice: Notice) -> None:
        if self._out is not None:
            await self._out.notify(notice)
