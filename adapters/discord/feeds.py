"""Feeds in text channels: a post there gets its comments in a thread on it, opened by the host.

Which channels are feeds is read from the fleet's configuration at each message, so a reload that
adds or removes a feed applies at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import discord

from adapters.discord.accounts import Accounts
from adapters.discord.channels import Channels
from adapters.discord.common import ARCHIVE_MINUTES, HOST, THREAD_EXISTS, Bounded, Where, thread_title
from bots.config import FeedConfig

log = logging.getLogger("botfleet.discord")


@dataclass
class FeedPost:
    """A post in a text channel feed. Its thread is opened when the first comment is ready, so a post
    nobody answers (its author opted out, everyone is resting) gets no empty thread."""

    parent: int
    title: str
    opened: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Feeds:
    def __init__(self, feeds: Callable[[], Sequence[FeedConfig]], accounts: Accounts, channels: Channels) -> None:
        self._feeds = feeds
        self._accounts = accounts
        self._channels = channels
        self._posts: Bounded = Bounded(1000)

    def is_feed(self, channel_id: int, where: Where) -> bool:
        return any(f.channel in (str(channel_id), where.name) for f in self._feeds())

    def add_post(self, message_id: int, parent: int, where: Where, text: str) -> None:
        """A post in a text channel feed: its comments go into a thread on it, which will have the
        message's id (as every thread started from a message does)."""
        self._posts[message_id] = FeedPost(parent, thread_title(text))
        self._channels.where[message_id] = Where("thread", parent, where.name)

    def parent_of_post(self, message_id: int) -> int | None:
        post: FeedPost | None = self._posts.get(message_id)
        return post.parent if post is not None else None

    async def open_thread(self, thread_id: int) -> bool:
        """Open a feed post's thread (the host does) before its first comment; False if we may not."""
        post: FeedPost | None = self._posts.get(thread_id)
        if post is None or post.opened:
            return True
        async with post.lock:
            if post.opened:
                return True
            if self._channels.is_denied((HOST, post.parent)):
                return False
            try:
                await self._start_thread(post.parent, thread_id, post.title)
            except discord.Forbidden:
                self._channels.deny((HOST, post.parent), "create threads")
                return False
            except discord.HTTPException as exc:
                # Another process of the fleet opened it first: fine, it is the same thread.
                if exc.code != THREAD_EXISTS:
                    log.warning("discord: could not open a thread on post %s: %s", thread_id, exc)
                    return False
            post.opened = True
        return True

    async def _start_thread(self, channel_id: int, message_id: int, title: str) -> None:
        client = self._accounts.any_sender()
        if client is None:
            raise RuntimeError("no Discord account is logged in")
        # A raw call: discord.py's PartialMessage.create_thread needs the guild cache, which senders lack.
        await client.http.start_thread_with_message(
            channel_id, message_id, name=title, auto_archive_duration=ARCHIVE_MINUTES
        )
