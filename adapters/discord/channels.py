"""What the adapter knows about channels: their kind, and which of them refused us."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import discord

from adapters.discord.accounts import Accounts
from adapters.discord.common import Bounded, Where

log = logging.getLogger("botfleet.discord")

# A channel that refused us (403) is left alone this long before one more try.
DENIED_SECONDS = 900.0
Key = tuple[str, int]  # (account, channel)


def where_of(channel: Any) -> Where:
    if isinstance(channel, discord.Thread):
        parent = channel.parent
        return Where("thread", channel.parent_id, parent.name if parent else channel.name)
    if isinstance(channel, discord.DMChannel | discord.GroupChannel):
        return Where("dm", None, "dm")
    if isinstance(channel, discord.ForumChannel):
        return Where("forum", None, channel.name)
    if isinstance(channel, discord.TextChannel):
        return Where("text", None, channel.name)
    return Where("other", None, getattr(channel, "name", "") or "")


class Channels:
    def __init__(self, accounts: Accounts, clock: Callable[[], float]) -> None:
        self._accounts = accounts
        self._clock = clock
        self.where: Bounded = Bounded(5000)
        self._denied: dict[Key, float] = {}
        self._denial_logged: set[Key] = set()
        # Channels that let us in at the last look: no probing lock needed there.
        self.welcome: Bounded = Bounded(5000)
        self._probe_locks: dict[Key, asyncio.Lock] = {}

    async def lookup(self, channel_id: int) -> Where:
        where = self.where.get(channel_id)
        if where is not None:
            return where
        client = self._accounts.any_sender()
        if client is None:
            return Where("other")
        where = where_of(await client.fetch_channel(channel_id))
        self.where[channel_id] = where
        return where

    def may_write(self, account: str, channel_id: int) -> bool:
        """False for another account's DM (the host's, say): only that account can write there."""
        where = self.where.get(channel_id)
        return where is None or where.kind != "dm" or where.account in (None, account)

    def is_denied(self, key: Key) -> bool:
        until = self._denied.get(key)
        return until is not None and until > self._clock()

    def deny(self, key: Key, what: str) -> None:
        self._denied[key] = self._clock() + DENIED_SECONDS
        self.welcome.pop(key, None)
        if key not in self._denial_logged:
            self._denial_logged.add(key)
            log.warning(
                "discord: %s may not %s in channel %s (403 Missing Permissions); skipping that channel",
                key[0],
                what,
                key[1],
            )

    def probe_lock(self, scope: Key) -> asyncio.Lock:
        return self._probe_locks.setdefault(scope, asyncio.Lock())
