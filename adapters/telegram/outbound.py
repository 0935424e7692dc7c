"""What the fleet sends: replies (typed, then posted or streamed as edits), reactions and the fleet's
own notices, each through the bot that speaks for the persona and within that bot's lane."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from functools import partial

from telegram.error import TelegramError

from adapters.telegram.emoji import ALLOWED as ALLOWED_REACTIONS
from adapters.telegram.lanes import Lanes
from adapters.telegram.places import Place
from adapters.telegram.post import CUT_OFF, TEXT_LIMIT, WRITING, Post, anchor, chunks_of, reply_parameters
from adapters.telegram.roster import BotAccount, Roster
from bots.core.brain import IncompleteReply
from bots.core.events import Notice, React, Reply, Sent
from bots.core.ports import LLMError
from bots.persona import Persona

log = logging.getLogger("botfleet.telegram")


async def _close(snapshots: AsyncIterator[str]) -> None:
    aclose = getattr(snapshots, "aclose", None)
    if aclose is not None:
        await aclose()


class Outbound:
    def __init__(self, roster: Roster, lanes: Lanes, *, stream_edits: bool) -> None:
        self.roster = roster
        self.lanes = lanes
        self.stream_edits = stream_edits
        self._bad_emoji: set[str] = set()

    async def deliver(self, reply: Reply, persona: Persona, snapshots: AsyncIterator[str]) -> Sent:
        place = Place.parse(reply.channel)
        bot = self.roster.voice(persona.id, place)
        if bot is None:
            log.debug("telegram: no bot can speak for %s in %s", persona.id, reply.channel)
            return Sent()
        # Typing first: a chat that has thrown the bot out is found before the model is paid to write.
        if not await self.lanes.typing(bot, place):
            return Sent()
        post = Post(self.lanes, bot, place, persona, place.number(reply.reply_to))
        typing = asyncio.create_task(self.lanes.keep_typing(bot, place))
        try:
            return await self._write(post, snapshots, typing)
        finally:
            typing.cancel()
            await _close(snapshots)

    async def _write(self, post: Post, snapshots: AsyncIterator[str], typing: asyncio.Task[None]) -> Sent:
        text = ""
        try:
            async for text in snapshots:
                if self.stream_edits:
                    await post.show(text, WRITING, throttle=True)
                    if post.ids:
                        typing.cancel()
                    if post.failed:
                        return post.result(text, complete=False)
        except IncompleteReply as cut:
            if not cut.partial:
                # Nothing worth keeping (the fleet withheld the reply, bots/core/safety): none of it stays.
                await post.remove()
                return post.result("", complete=False)
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
        place = Place.parse(react.channel)
        bot = self.roster.voice(persona.id, place)
        number = place.number(react.message_id)
        if bot is None or bot.app is None or number is None:
            return
        set_reaction = partial(bot.app.bot.set_message_reaction, place.chat_id, number, react.emoji)
        try:
            await self.lanes.call(bot, place.chat_id, set_reaction, pace=False)
        except TelegramError as exc:
            log.warning("telegram: %s could not react in %s: %s", bot.label, place.chat_id, exc)

    async def notify(self, notice: Notice) -> None:
        place = Place.parse(notice.channel)
        chunks = chunks_of(notice.text, TEXT_LIMIT)
        bots = self.roster.notice_bots(place)
        if not chunks or not bots:
            return
        to_user = notice.to_user or ""
        # Private answers go by DM when the user has opened one with the bot; else into the chat.
        if notice.private and not place.is_private and to_user.isdigit():
            if await self._post_plain(bots[0], Place(int(to_user), bots[0].account), chunks, None):
                return
        for bot in bots:
            if await self._post_plain(bot, place, chunks, place.number(notice.reply_to)):
                return
        log.warning("telegram: no bot could post the fleet's notice in chat %s", place.chat_id)

    async def _post_plain(self, bot: BotAccount, place: Place, chunks: list[str], reply_to: int | None) -> bool:
        """Fleet text without a parse mode: nothing in it can be mistaken for markup."""
        assert bot.app is not None
        chat_id = place.chat_id
        previous: int | None = None
        for n, chunk in enumerate(chunks):
            send = partial(
                bot.app.bot.send_message,
                chat_id,
                chunk,
                reply_parameters=reply_parameters(anchor(place, reply_to, previous, n)),
                message_thread_id=place.thread,
            )
            try:
                sent = await self.lanes.call(bot, chat_id, send, pace=True)
            except TelegramError as exc:
                log.warning("telegram: %s could not post a notice in %s: %s", bot.label, chat_id, exc)
                sent = None
            if sent is None:
                return n > 0  # part of it is out: another bot repeating it would duplicate
            previous = sent.message_id
        return True
