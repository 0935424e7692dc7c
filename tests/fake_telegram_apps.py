"""Real python-telegram-bot Applications against the fake Bot API: what tests/test_fake_telegram*.py share."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeAlias

import aiohttp
import pytest_asyncio
from telegram import Message, Update
from telegram.ext import Application, ApplicationBuilder, CommandHandler, ContextTypes, MessageHandler, filters

from tests.fakes.telegram import FakeTelegram, JSONDict

# httpx logs every request URL at INFO, and the URL carries the bot token.
logging.getLogger("httpx").setLevel(logging.WARNING)

TOKEN_A = "1001:test-token-alpha"
TOKEN_B = "1002:test-token-beta"

App: TypeAlias = Application[Any, Any, Any, Any, Any, Any]


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    """A started fake Bot API; import it to use it."""
    async with FakeTelegram() as server:
        yield server


def build_app(fake: FakeTelegram, token: str) -> App:
    return ApplicationBuilder().token(token).base_url(fake.base_url).base_file_url(fake.base_file_url).build()


@asynccontextmanager
async def running(*apps: App) -> AsyncIterator[None]:
    """The multi-bot lifecycle: never run_polling, which would own the event loop."""
    started: list[App] = []
    try:
        for app in apps:
            await app.initialize()
            started.append(app)
            assert app.updater is not None
            await app.updater.start_polling(poll_interval=0, timeout=1)
            await app.start()
        yield
    finally:
        for app in reversed(started):
            if app.updater and app.updater.running:
                await app.updater.stop()
            if app.running:
                await app.stop()
            await app.shutdown()


class Recorder:
    """Collects what a bot's handlers saw, and optionally answers as the bot."""

    def __init__(self, reply: str | None = None) -> None:
        self.reply = reply
        self.messages: list[Update] = []
        self.commands: list[tuple[str, list[str]]] = []

    async def on_message(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        self.messages.append(update)
        if self.reply and update.effective_message:
            await update.effective_message.reply_text(self.reply, do_quote=True)

    async def on_ask(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        self.commands.append(("ask", list(context.args or [])))


def bot_app(fake: FakeTelegram, token: str, recorder: Recorder) -> App:
    app = build_app(fake, token)
    app.add_handler(CommandHandler("ask", recorder.on_ask))
    app.add_handler(MessageHandler(filters.ALL & ~filters.COMMAND, recorder.on_message))
    return app


def texts(fake: FakeTelegram, bot: str) -> list[str]:
    return [u["message"]["text"] for u in fake.delivered(bot) if "message" in u]


def message_of(update: Update) -> Message:
    assert update.effective_message is not None
    return update.effective_message


async def send_as_bot(http: aiohttp.ClientSession, fake: FakeTelegram, token: str, **form: Any) -> JSONDict:
    data = {k: v if isinstance(v, str) else json.dumps(v) for k, v in form.items()}
    async with http.post(f"{fake.base_url}{token}/sendMessage", data=data) as response:
        body: JSONDict = await response.json()
    assert body["ok"], body
    result: JSONDict = body["result"]
    return result
