"""The host bot's webhooks, one per channel (threads post through their parent's): found or created
once and cached; a deleted one (10015) is made again, a refused persona name made plainer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import Any

import aiohttp
import discord

from adapters.discord.accounts import Accounts
from adapters.discord.common import HOOK_NAME, UNKNOWN_WEBHOOK, Bounded, webhook_username

log = logging.getLogger("botfleet.discord")


class Webhooks:
    def __init__(self, accounts: Accounts) -> None:
        self._accounts = accounts
        self._hooks: dict[int, discord.Webhook] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        # Every webhook id known to be the host's: their messages are our own echoes.
        self.ours: set[int] = set()
        self._verdicts: Bounded = Bounded(2000)

    async def get(self, channel_id: int) -> discord.Webhook:
        """The host's webhook in a channel (not a thread): found or created once, then cached."""
        hook = self._hooks.get(channel_id)
        if hook is not None:
            return hook
        async with self._locks.setdefault(channel_id, asyncio.Lock()):
            hook = self._hooks.get(channel_id)
            if hook is None:
                channel, ours = await self._learn(channel_id)
                hook = ours[0] if ours else await channel.create_webhook(name=HOOK_NAME, reason="botfleet personas")
                self._hooks[channel_id] = hook
                self.ours.add(hook.id)
        return hook

    async def _learn(self, channel_id: int) -> tuple[Any, list[discord.Webhook]]:
        """The channel, and the host's usable webhooks in it (another process may have made them)."""
        host = self._accounts.host()
        if host is None:
            raise LookupError("no host bot, so no webhooks")
        channel: Any = await host.fetch_channel(channel_id)
        me = host.user.id if host.user else None
        ours = [h for h in await channel.webhooks() if h.token and h.user is not None and h.user.id == me]
        self.ours.update(h.id for h in ours)
        return channel, ours

    async def is_ours(self, hook: int, parent: int) -> bool:
        """Whether a webhook we have not made in this process is the host's (another process's, say)."""
        if hook in self.ours:
            return True
        if hook not in self._verdicts:
            # Ask once per webhook: the answer does not change.
            with contextlib.suppress(discord.HTTPException, aiohttp.ClientError, LookupError):
                await self._learn(parent)
            self._verdicts[hook] = hook in self.ours
        return bool(self._verdicts[hook])

    async def send(
        self,
        channel_id: int,
        thread: discord.Object | None,
        content: str,
        username: str,
        avatar: str | None,
        mentions: discord.AllowedMentions,
    ) -> discord.WebhookMessage:
        """Send through the channel's webhook; a deleted one is recreated once, a refused name adjusted once."""
        for attempt in range(2):
            hook = await self.get(channel_id)
            try:
                return await hook.send(
                    content,
                    username=username,
                    avatar_url=avatar or discord.utils.MISSING,
                    allowed_mentions=mentions,
                    thread=thread or discord.utils.MISSING,
                    wait=True,
                )
            except discord.HTTPException as exc:
                if attempt:
                    raise
                username = self._recover(exc, channel_id, username)
        raise AssertionError("unreachable")

    def _recover(self, exc: discord.HTTPException, channel_id: int, username: str) -> str:
        """What to try once more after a failed send (the name to use), or raise `exc` again."""
        if isinstance(exc, discord.NotFound):
            if exc.code != UNKNOWN_WEBHOOK:
                raise exc
            log.info("discord: webhook in %s was deleted; making a new one", channel_id)
            self._hooks.pop(channel_id, None)
            return username
        if exc.status != 400 or "username" not in str(exc.text).lower():
            raise exc
        log.warning("discord: webhook name %r refused (%s); using a plainer one", username, exc.text)
        return webhook_username(re.sub(r"[^\w .-]", "", username), "Persona")
