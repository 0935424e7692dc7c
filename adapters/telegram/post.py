"""One reply on screen: the messages it spans, sent and then edited in step with the text as the
model writes it, and the small text rules they share with the fleet's notices."""

from __future__ import annotations

import html
import logging
from functools import partial

from telegram import ReplyParameters
from telegram.constants import ParseMode
from telegram.error import BadRequest, TelegramError

from adapters.telegram.lanes import Lanes
from adapters.telegram.places import Place
from adapters.telegram.roster import BotAccount
from bots.core.events import Sent
from bots.core.text import split_text
from bots.persona import Persona

log = logging.getLogger("botfleet.telegram")

TEXT_LIMIT = 4096
EDIT_EVERY_GROUP = 3.0  # edits spend the group's 20-per-minute budget
EDIT_EVERY_PRIVATE = 1.0
WRITING = " …"
CUT_OFF = " … (cut off)"


def utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def chunks_of(text: str, room: int) -> list[str]:
    """split_text counts characters, Telegram counts UTF-16 units: re-split what emoji pushed over."""
    out: list[str] = []
    for chunk in split_text(text, room):
        out.extend([chunk] if utf16(chunk) <= room else split_text(chunk, room // 2))
    return out


def anchor(place: Place, reply_to: int | None, previous: int | None, n: int) -> int | None:
    """What part n of a text replies to: the first part to the message answered; in a thread the
    rest to the part before, since a message that replies to nothing would land outside the thread."""
    if n == 0:
        return reply_to
    return previous if place.thread else None


def reply_parameters(number: int | None) -> ReplyParameters | None:
    # The message may be gone by the time a reply is written; post anyway rather than fail.
    return None if number is None else ReplyParameters(number, allow_sending_without_reply=True)


class Post:
    def __init__(self, lanes: Lanes, bot: BotAccount, place: Place, persona: Persona, reply_to: int | None) -> None:
        self.lanes, self.bot, self.place, self.persona = lanes, bot, place, persona
        self.reply_to = reply_to
        speaks_for_others = bot.persona_id != persona.id
        self.prefix_html = f"<b>{html.escape(persona.name, quote=False)}</b>: " if speaks_for_others else ""
        self.prefix_plain = f"{persona.name}: " if speaks_for_others else ""
        # The name and a cut-off marker must fit as well; HTML escapes do not count (the limit
        # applies to the text after entity parsing).
        self.room = TEXT_LIMIT - utf16(self.prefix_plain) - utf16(CUT_OFF)
        self.every = EDIT_EVERY_PRIVATE if place.is_private else EDIT_EVERY_GROUP
        self.ids: list[int] = []
        self.shown: list[str] = []
        self.failed = False
        self._next_edit = 0.0

    def result(self, text: str, *, complete: bool) -> Sent:
        ids = tuple(self.place.message_id(n) for n in self.ids)
        return Sent(message_ids=ids, text=text, complete=complete and bool(ids))

    async def show(self, text: str, suffix: str, *, throttle: bool, grow: bool = True) -> None:
        """Make the messages show text + suffix; `grow=False` only edits what is already there."""
        too_soon = throttle and self.ids and self.lanes.clock() < self._next_edit
        if self.failed or too_soon or (not grow and not self.ids):
            return
        chunks = chunks_of(text, self.room)
        if not grow:
            chunks = chunks[: len(self.ids)]
        if not chunks:
            return
        chunks[-1] += suffix
        try:
            await self._match(chunks)
        except TelegramError as exc:
            self.failed = True
            log.warning("telegram: %s could not post in %s: %s", self.bot.label, self.place.chat_id, exc)
        self._next_edit = self.lanes.clock() + self.every

    async def _match(self, chunks: list[str]) -> None:
        for n, chunk in enumerate(chunks):
            if n < len(self.ids):
                if self.shown[n] != chunk:
                    await self._edit(n, chunk)
            elif not await self._send(chunk):
                return
        while len(self.ids) > len(chunks):
            await self._delete_last()  # the text now splits into fewer messages

    async def _send(self, chunk: str) -> bool:
        app = self.bot.app
        assert app is not None
        chat = self.place.chat_id
        reply = reply_parameters(anchor(self.place, self.reply_to, self.ids[-1] if self.ids else None, len(self.ids)))
        # A topic's id as well as the reply: a reply to nothing (or to a deleted message) stays in it.
        thread = self.place.thread
        send_html = partial(
            app.bot.send_message, chat, self.prefix_html + html.escape(chunk, quote=False),
            parse_mode=ParseMode.HTML, reply_parameters=reply, message_thread_id=thread,
        )  # fmt: skip
        try:
            sent = await self.lanes.call(self.bot, chat, send_html, pace=True)
        except BadRequest as exc:
            if "parse entities" not in exc.message.lower():
                raise
            log.info("telegram: Telegram refused the formatting of a reply; sending it as plain text")
            send_plain = partial(
                app.bot.send_message, chat, self.prefix_plain + chunk, reply_parameters=reply, message_thread_id=thread
            )
            sent = await self.lanes.call(self.bot, chat, send_plain, pace=True)
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
            await self.lanes.call(self.bot, chat, edit_html, pace=False)
        except BadRequest as exc:
            reason = exc.message.lower()
            if "not modified" in reason:
                pass
            elif "parse entities" in reason:
                plain = self.prefix_plain + chunk
                edit_plain = partial(app.bot.edit_message_text, plain, chat_id=chat, message_id=number)
                await self.lanes.call(self.bot, chat, edit_plain, pace=False)
            else:
                raise
        self.shown[n] = chunk

    async def remove(self) -> None:
        """Delete every message of this reply: nothing of it is worth keeping (a withheld reply)."""
        try:
            while self.ids:
                await self._delete_last()
        except TelegramError as exc:
            log.warning("telegram: %s could not remove a withheld reply: %s", self.bot.label, exc)

    async def _delete_last(self) -> None:
        app = self.bot.app
        assert app is not None
        delete = partial(app.bot.delete_message, self.place.chat_id, self.ids.pop())
        self.shown.pop()
        await self.lanes.call(self.bot, self.place.chat_id, delete, pace=False)
