"""The host bot's webhooks, one per channel (threads post through their parent's): found or created
once and cached; a deleted one (10015) is made again, a refused persona name made plainer.

A webhook POST answered with a 5xx may have created the message all the same. discord.py retries
any 5xx inside its webhook request loop, which would post it twice, so sends go through a session
of our own that ends that loop with `AnswerLost`; the channel is then checked for the message
before it is sent again (issue 11.15).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import aiohttp
import discord

from adapters.discord.accounts import Accounts
from adapters.discord.common import HOOK_NAME, UNKNOWN_WEBHOOK, Bounded, webhook_username

log = logging.getLogger("botfleet.discord")

# How far back a lost message is looked for: a clock ahead of Discord's must not hide it.
LOOK_BACK = timedelta(seconds=30)
LOOK_AT = 100  # messages read from the look-back point on (the most Discord gives in one page)


class AnswerLost(discord.DiscordServerError):
    """A webhook POST answered with a 5xx: the message may exist even so."""


async def _stop_at_a_lost_post(response: aiohttp.ClientResponse) -> None:
    # aiohttp calls this for every response, inside discord.py's retry loop: raising leaves it.
    if response.method == "POST" and response.status >= 500:
        text = await response.text()
        raise AnswerLost(response, text)


class Webhooks:
    def __init__(self, accounts: Accounts) -> None:
        self._accounts = accounts
        self._hooks: dict[int, discord.Webhook] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        # Every webhook id known to be the host's: their messages are our own echoes.
        self.ours: set[int] = set()
        self._verdicts: Bounded = Bounded(2000)
        # Messages this process has posted, so an identical earlier one is never taken for a lost one.
        self._posted: Bounded = Bounded(500)
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _sender(self, hook: discord.Webhook) -> discord.Webhook:
        """The same webhook on our own session, where a 5xx on a POST is not retried blindly."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(raise_for_status=_stop_at_a_lost_post)
        host = self._accounts.host()
        client = host if host is not None else discord.utils.MISSING
        assert hook.token is not None  # only the host's own webhooks, which come with their tokens
        return discord.Webhook.partial(hook.id, hook.token, session=self._session, client=client)

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
    ) -> int:
        """Send through the channel's webhook and return the message id; a deleted webhook is recreated
        once, a refused name adjusted once, a lost answer checked against the channel."""
        post = _Post(thread.id if thread else channel_id, content, username, avatar, mentions, thread)
        for attempt in range(2):
            hook = await self.get(channel_id)
            try:
                return await self._post_once(hook, post)
            except discord.HTTPException as exc:
                if attempt:
                    raise
                post = post.named(self._recover(exc, channel_id, post.username))
        raise AssertionError("unreachable")

    async def _post_once(self, hook: discord.Webhook, post: _Post) -> int:
        """One message, even when an answer is lost: it is looked for before it is sent again."""
        since = discord.utils.time_snowflake(discord.utils.utcnow() - LOOK_BACK)
        sender = self._sender(hook)
        for again in (False, True):
            try:
                sent = await sender.send(
                    post.content,
                    username=post.username,
                    avatar_url=post.avatar or discord.utils.MISSING,
                    allowed_mentions=post.mentions,
                    thread=post.thread or discord.utils.MISSING,
                    wait=True,
                )
                return self._remember(sent.id)
            except AnswerLost as exc:
                log.warning("discord: webhook send in %s answered %s; looking for it", post.where, exc.status)
                try:
                    found = await self._find(hook.id, post, since)
                except (discord.HTTPException, aiohttp.ClientError) as lookup:
                    # Unable to tell: sending again could show it twice, so the reply counts as failed.
                    raise exc from lookup
                if found is not None:
                    return self._remember(found)
                if again:
                    raise
        raise AssertionError("unreachable")

    def _remember(self, message_id: int) -> int:
        self._posted[message_id] = True
        return message_id

    async def _find(self, hook_id: int, post: _Post, since: int) -> int | None:
        """The id of the message a lost answer was about, if Discord created it."""
        host = self._accounts.host()
        if host is None:
            return None
        recent = await host.http.logs_from(post.where, LOOK_AT, after=since)
        for message in sorted(recent, key=lambda m: int(m["id"]), reverse=True):
            if int(message["id"]) in self._posted or message.get("webhook_id") != str(hook_id):
                continue
            if (
                message["author"].get("username") == post.username
                and message["content"].strip() == post.content.strip()
            ):
                return int(message["id"])
        return None

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


@dataclass(frozen=True)
class _Post:
    where: int  # the channel or thread the message appears in
    content: str
    username: str
    avatar: str | None
    mentions: discord.AllowedMentions
    thread: discord.Object | None

    def named(self, username: str) -> _Post:
        return replace(self, username=username)
