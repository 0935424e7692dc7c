"""The fleet's Telegram bots: the host bot and persona bots, looked up by account, user id and
username, and which of them speaks (or posts the fleet's notices) in a given place."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from telegram import User
from telegram.ext import Application

from adapters.telegram.places import HOST, Place, account_of
from bots.config import TelegramConfig
from bots.persona import Persona

log = logging.getLogger("botfleet.telegram")

App: TypeAlias = Application[Any, Any, Any, Any, Any, Any]


@dataclass(eq=False)
class BotAccount:
    """One bot token: its Application once initialize() succeeded, and who Telegram says it is."""

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
    def where(self) -> str:
        """The setting that holds this bot's token, for error messages."""
        return "adapters.telegram.token" if self.persona_id is None else "platforms.telegram.token"

    @property
    def label(self) -> str:
        return f"@{self.username} ({self.account})" if self.username else self.account


class Roster:
    def __init__(self, config: TelegramConfig, personas: Sequence[Persona]) -> None:
        self._bots: dict[str, BotAccount] = {}
        if config.token:
            self._bots[account_of(None)] = BotAccount(account_of(None), None, config.token)
        # Personas without a bot of their own: they speak through the host bot.
        self.voiceless: list[str] = []
        for p in personas:
            token = p.platforms.telegram.token if p.platforms.telegram else ""
            if not token:
                self.voiceless.append(p.id)
            elif p.id == HOST:
                log.error("telegram: persona id %r clashes with the host bot's account; its token is ignored", HOST)
            else:
                self._bots[account_of(p.id)] = BotAccount(account_of(p.id), p.id, token)
        self._by_user_id: dict[int, BotAccount] = {}
        self._by_username: dict[str, BotAccount] = {}
        # Bots known to be in a chat (they received something there), in order of arrival.
        self._present: dict[int, dict[str, None]] = {}

    def __iter__(self) -> Iterator[BotAccount]:
        return iter(self._bots.values())

    def accounts(self) -> list[str]:
        return list(self._bots)

    def tokens(self) -> list[str]:
        return [b.token for b in self._bots.values()]

    def get(self, account: str) -> BotAccount | None:
        return self._bots.get(account)

    def online(self, bot: BotAccount, app: App, me: User) -> None:
        bot.app, bot.user_id, bot.username = app, me.id, me.username or ""
        self._by_user_id[me.id] = bot
        self._by_username[bot.username.lower()] = bot

    def by_user_id(self, user_id: int) -> BotAccount | None:
        return self._by_user_id.get(user_id)

    def by_username(self, username: str) -> BotAccount | None:
        return self._by_username.get(username.lower())

    def seen(self, bot: BotAccount, chat_id: int) -> None:
        self._present.setdefault(chat_id, {})[bot.account] = None

    def ready(self, account: str | None) -> BotAccount | None:
        bot = self._bots.get(account) if account else None
        return bot if bot is not None and bot.ready else None

    def voice(self, persona_id: str, place: Place) -> BotAccount | None:
        """The bot that speaks (or reacts) for a persona here."""
        if place.dm_account is not None:
            return self.ready(place.dm_account)  # a private chat has exactly one bot in it
        own = self._bots.get(account_of(persona_id))
        if own is not None:
            # A rejected token silences its persona instead of hiding the error behind the host bot.
            return own if own.ready else None
        return self.ready(account_of(None))

    def notice_bots(self, place: Place) -> list[BotAccount]:
        """Who may post the fleet's own messages here, best first."""
        if place.dm_account is not None:
            bot = self.ready(place.dm_account)
            return [bot] if bot else []
        host = self.ready(account_of(None))
        present = self._persona_bots_in(place.chat_id)
        if host is not None or present:
            return ([host] if host else []) + present
        return [b for b in self._bots.values() if b.ready]

    def _persona_bots_in(self, chat_id: int) -> list[BotAccount]:
        ready = (self.ready(a) for a in self._present.get(chat_id, {}))
        return [b for b in ready if b is not None and b.persona_id is not None]
