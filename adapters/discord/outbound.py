"""Replies, reactions and notices out to Discord: choosing the account or webhook, probing the
channel before the model is paid for, streaming edits, splitting, and marking a cut-off reply."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import discord

from adapters.discord.accounts import Accounts
from adapters.discord.channels import Channels
from adapters.discord.common import CUT_MARK, HOST, LIMIT, nobody, snowflake, webhook_username
from adapters.discord.feeds import Feeds
from adapters.discord.live import Clock, Live, Sleep
from adapters.discord.targets import AccountTarget, DMTarget, Target, WebhookTarget
from adapters.discord.webhooks import Webhooks
from bots.config import DiscordConfig
from bots.core.brain import IncompleteReply
from bots.core.events import Notice, React, Reply, Sent
from bots.core.text import split_text
from bots.persona import Persona

log = logging.getLogger("botfleet.discord")

# Discord shows "typing…" for about 10 s after each call.
TYPING_REFRESH = 8.0


def _nothing() -> Sent:
    """A delivery that posted nothing: not complete, and no ids to feed back."""
    return Sent(complete=False)


def _preview(text: str, limit: int) -> str:
    chunks = split_text(text, limit)
    return chunks[0] if chunks else ""


class Outbound:
    def __init__(
        self,
        config: DiscordConfig,
        accounts: Accounts,
        webhooks: Webhooks,
        channels: Channels,
        feeds: Feeds,
        *,
        edit_interval: float,
        clock: Clock,
        sleep: Sleep,
    ) -> None:
        self._config = config
        self._accounts = accounts
        self._webhooks = webhooks
        self._channels = channels
        self._feeds = feeds
        self._edit_interval = edit_interval
        self._clock = clock
        self._sleep = sleep

    # --- replies ------------------------------------------------------------------------------------

    async def _target(self, reply: Reply, persona: Persona) -> Target | None:
        channel = int(reply.channel)
        to_user = snowflake(reply.to_user)
        ping = self._config.reply_ping and to_user is not None
        reply_to = snowflake(reply.reply_to)
        # The thread's own starter (a feed post) needs no "replying to": the whole thread is about it.
        answering = reply_to if reply_to is not None and reply_to != channel else None
        own = self._accounts.own(persona.id)
        if own is not None and own.sender is not None and self._channels.may_write(own.name, channel):
            reference = None
            if answering is not None:
                reference = discord.MessageReference(message_id=answering, channel_id=channel, fail_if_not_exists=False)
            return AccountTarget(own.name, own.sender, channel, reference, nobody(replied_user=ping))
        return await self._host_target(persona, channel, to_user if answering is not None else None, ping)

    async def _host_target(self, persona: Persona, channel: int, to_user: int | None, ping: bool) -> Target | None:
        """The host speaks for a persona without an account: a webhook, or its own DM."""
        host = self._accounts.host()
        if host is None:
            return None
        where = await self._channels.lookup(channel)
        if where.kind == "dm":
            return DMTarget(host, channel, persona.name)
        header = f"-# ↪ <@{to_user}>" if to_user is not None else ""
        mentions = nobody()
        if ping and header and to_user is not None:
            user = discord.Object(to_user)
            mentions = discord.AllowedMentions(everyone=False, roles=False, replied_user=False, users=[user])
        username = webhook_username(persona.name, persona.id)
        return WebhookTarget(self._webhooks, host, channel, where, username, persona.avatar_url, mentions, header)

    async def deliver(self, reply: Reply, persona: Persona, snapshots: AsyncIterator[str]) -> Sent:
        # Every failure below posted nothing: an incomplete Sent without ids, so the core does not count
        # the reply as sent and owes its AI disclosure again.
        if not await self._feeds.open_thread(int(reply.channel)):
            return _nothing()
        try:
            target = await self._target(reply, persona)
        except discord.Forbidden:
            self._channels.deny((HOST, int(reply.channel)), "use webhooks")
            return _nothing()
        if target is None or not await self._probe(target):
            return _nothing()
        typing = asyncio.ensure_future(self._keep_typing(target))
        try:
            return await self._write(target, snapshots, typing.cancel)
        except discord.Forbidden:
            self._channels.deny(target.key, "send messages")
            return _nothing()
        except discord.HTTPException as exc:
            acct = self._accounts.by_name.get(target.key[0])
            if exc.status == 401 and acct is not None and isinstance(target, AccountTarget):
                await self._accounts.revoke(acct, "token rejected by Discord (401)")
            else:
                log.warning("discord: reply by %s in %s failed: %s", persona.id, reply.channel, exc)
            return _nothing()
        finally:
            typing.cancel()

    async def _probe(self, target: Target) -> bool:
        """Show typing and find the webhook, and so learn whether the channel lets us in before the
        LLM is paid for.

        The first contact with a channel (or a parent's threads) holds a lock, so replies racing into
        a channel that refuses us make one refused request between them, not one each.
        """
        channels = self._channels
        if channels.is_denied(target.key) or channels.is_denied(target.scope):
            return False
        if target.key in channels.welcome:
            await self._typing(target)
            return True
        async with channels.probe_lock(target.scope):
            if channels.is_denied(target.key) or channels.is_denied(target.scope):
                return False
            try:
                await target.typing()
            except discord.Forbidden:
                channels.deny(target.key, "send messages")
                return False
            except (discord.HTTPException, aiohttp.ClientError) as exc:
                log.debug("discord: typing failed: %s", exc)
            try:
                await target.prepare()
            except discord.Forbidden:
                channels.deny(target.scope, "manage webhooks")
                return False
            except (discord.HTTPException, aiohttp.ClientError, LookupError) as exc:
                log.debug("discord: finding the webhook failed: %s", exc)
                return True
            channels.welcome[target.key] = True
            return True

    async def _typing(self, target: Target) -> None:
        try:
            await target.typing()
        except discord.Forbidden:
            # Permissions can change: forget that the channel let us in, the send will tell.
            self._channels.welcome.pop(target.key, None)
        except (discord.HTTPException, aiohttp.ClientError) as exc:
            log.debug("discord: typing failed: %s", exc)

    async def _keep_typing(self, target: Target) -> None:
        while True:
            await self._sleep(TYPING_REFRESH)
            await self._typing(target)

    async def _write(self, target: Target, snapshots: AsyncIterator[str], posted: Callable[[], Any]) -> Sent:
        live = None
        if self._config.stream_edits:
            live = Live(target, self._edit_interval, posted, self._clock, self._sleep)
        text = ""
        try:
            async for text in snapshots:
                if live is not None:
                    live.update(_preview(text, target.limit))
        except IncompleteReply as cut:
            return await self._cut_off(target, live, cut.partial)
        except (Exception, asyncio.CancelledError):
            # Whatever stopped the model, what is on screen must not pass for a finished reply.
            try:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._cut_off(target, live, live.latest if live else ""), 5)
            finally:
                if live is not None:
                    live.abandon()
            raise
        return await self._finish(target, live, text, posted)

    async def _finish(self, target: Target, live: Live | None, text: str, posted: Callable[[], Any]) -> Sent:
        chunks = split_text(text, target.limit)
        shown: list[tuple[int, str]] = []  # (message id, text) of what is on screen
        try:
            if live is not None:
                chunks = await self._close_live(target, live, chunks, shown)
            for chunk in chunks:
                message_id = await target.post(chunk, first=not shown)
                shown.append((message_id, chunk))
                posted()
        except (discord.HTTPException, aiohttp.ClientError) as exc:
            return await self._broken(target, shown, exc)
        return Sent(message_ids=tuple(str(i) for i, _ in shown), text=text, complete=bool(shown))

    @staticmethod
    async def _close_live(target: Target, live: Live, chunks: list[str], shown: list[tuple[int, str]]) -> list[str]:
        """Stop the streamed message and give it the final first part; returns the parts still to post."""
        await live.stop()
        if live.message_id is not None:
            shown.append((live.message_id, live.shown))
        if live.error is not None:
            raise live.error
        if live.message_id is None:
            return chunks
        if chunks and chunks[0] != live.shown:
            await live.pace()
            await target.edit(live.message_id, chunks[0])
            shown[-1] = (live.message_id, chunks[0])
        return chunks[1:]

    async def _broken(self, target: Target, shown: list[tuple[int, str]], exc: BaseException) -> Sent:
        """Part of a reply is on screen and the rest could not be written: mark the last part shown as
        cut off, and report what is shown. With nothing shown, the caller decides what the error means."""
        if not shown:
            raise exc
        if isinstance(exc, discord.Forbidden):
            self._channels.deny(target.key, "send messages")
        log.warning("discord: a reply broke off after %d message(s): %s", len(shown), exc)
        message_id, last = shown[-1]
        kept = _preview(last, target.limit - len(CUT_MARK) - 1)
        try:
            await target.edit(message_id, f"{kept} {CUT_MARK}")
        except (discord.HTTPException, aiohttp.ClientError) as failed:
            log.warning("discord: could not mark a cut-off reply: %s", failed)
            kept = last
        shown[-1] = (message_id, kept)
        return Sent(message_ids=tuple(str(i) for i, _ in shown), text="\n\n".join(t for _, t in shown), complete=False)

    async def _cut_off(self, target: Target, live: Live | None, partial: str) -> Sent:
        """Mark a streamed message whose model stopped mid-way, or remove it if nothing is worth keeping."""
        if live is None:
            return _nothing()
        await live.stop()
        if live.message_id is None:
            return _nothing()
        await live.pace()
        kept = _preview(partial, target.limit - len(CUT_MARK) - 1)
        try:
            if kept:
                await target.edit(live.message_id, f"{kept} {CUT_MARK}")
            else:
                await target.delete(live.message_id)
                return _nothing()
        except discord.HTTPException as exc:
            log.warning("discord: could not mark a cut-off reply: %s", exc)
            kept = live.shown
        return Sent(message_ids=(str(live.message_id),), text=kept, complete=False)

    # --- reactions and notices ----------------------------------------------------------------------

    def _reactor(self, persona: Persona, channel: int) -> tuple[str, discord.Client | None]:
        """The account that reacts for a persona: its own where it may write, else the host."""
        own = self._accounts.own(persona.id)
        if own is not None and own.sender is not None and self._channels.may_write(own.name, channel):
            return own.name, own.sender
        return HOST, self._accounts.host()

    async def react(self, react: React, persona: Persona) -> None:
        account, client = self._reactor(persona, int(react.channel))
        if client is None:
            return
        channel, message_id = int(react.channel), int(react.message_id)
        parent = self._feeds.parent_of_post(channel)
        if parent is not None and message_id == channel:
            # A text channel feed's post lives in the channel, not in the thread named after it.
            channel = parent
        key = (account, channel)
        if self._channels.is_denied(key):
            return
        message = client.get_partial_messageable(channel).get_partial_message(message_id)
        try:
            await message.add_reaction(react.emoji)
        except discord.Forbidden:
            self._channels.deny(key, "add reactions")
        except discord.HTTPException as exc:
            log.info("discord: %s could not react %s: %s", persona.id, react.emoji, exc)

    async def notify(self, notice: Notice) -> None:
        """A notice with no interaction to answer: in the channel, or by DM when it is private."""
        host = self._accounts.host()
        if host is None:
            return
        try:
            await self._post_notice(host, notice)
        except discord.Forbidden:
            self._channels.deny((HOST, int(notice.channel)), "send messages")
        except discord.HTTPException as exc:
            log.warning("discord: notice in %s failed: %s", notice.channel, exc)

    async def _post_notice(self, host: discord.Client, notice: Notice) -> None:
        if notice.private and notice.to_user:
            # No interaction to answer ephemerally: a DM is the private place.
            user = await host.fetch_user(int(notice.to_user))
            channel: Any = await user.create_dm()
        else:
            channel = host.get_partial_messageable(int(notice.channel))
        reply_to = snowflake(notice.reply_to)
        for n, chunk in enumerate(split_text(notice.text, LIMIT)):
            reference = None
            if n == 0 and reply_to is not None and not notice.private:
                reference = discord.MessageReference(
                    message_id=reply_to, channel_id=int(notice.channel), fail_if_not_exists=False
                )
            await channel.send(chunk, reference=reference, allowed_mentions=nobody())
