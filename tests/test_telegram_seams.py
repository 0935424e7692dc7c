"""The Telegram adapter's seams: menus generated from the one command table, the one build method
outside harnesses override, time taken from the fleet, and tokens handed to the one log masker.
End to end against the fake Bot API (tests/telegram_world.py); nothing of ours is replaced."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from pathlib import Path

import pytest
from telegram.ext import AIORateLimiter, ApplicationBuilder

from adapters.telegram import TelegramAdapter
from adapters.telegram.lanes import PACE_SECONDS
from adapters.telegram.logguard import guard_tokens
from adapters.telegram.menu import menus
from adapters.telegram.roster import App
from bots.config import TelegramConfig
from bots.core.commands import COMMANDS
from bots.ops.logs import MASK, MaskingFilter, RedactingFormatter, SecretMask
from bots.persona import Persona
from tests.fakes.telegram import FakeTelegram
from tests.telegram_world import telegram_fleet


def test_menus_come_from_the_command_table() -> None:
    by_scope = {scope.type: [c.command for c in commands] for scope, commands in menus()}
    assert by_scope["default"] == by_scope["all_group_chats"] == list(COMMANDS)
    assert by_scope["all_private_chats"] == [n for n, spec in COMMANDS.items() if spec.in_private_chats]
    assert "mute" not in by_scope["all_private_chats"] and "help" in by_scope["all_private_chats"]


async def test_the_private_chat_menu_lacks_mute_and_the_group_menu_has_it(tmp_path: Path) -> None:
    async with telegram_fleet(tmp_path) as w:
        for bot in ("fleet_host_bot", "skeptic_bot", "optimist_bot"):
            private = w.fake.menu_for(bot, w.alice)
            assert "mute" not in private and "unmute" not in private
            assert {"ask", "help", "optout", "forget"} <= set(private)
            assert w.fake.menu_for(bot, w.group, w.alice) == list(COMMANDS)
            assert w.fake.menu_for(bot, w.group, w.bob) == list(COMMANDS)  # admins get the same menu


class HarnessAdapter(TelegramAdapter):
    """What an outside harness does: build every bot itself, here against its own Bot API server."""

    def __init__(self, server: str, config: TelegramConfig, personas: list[Persona]) -> None:
        super().__init__(config, personas)
        self.server = server
        self.built: list[str] = []

    def make_application(self, account: str) -> App:
        bot = self.roster.get(account)
        assert bot is not None
        self.built.append(account)
        builder = ApplicationBuilder().token(bot.token).base_url(self.server).rate_limiter(AIORateLimiter())
        app: App = builder.build()
        return app


async def test_every_bot_is_built_through_make_application(tmp_path: Path) -> None:
    adapters: list[HarnessAdapter] = []

    def make(fake: FakeTelegram, config: TelegramConfig, personas: list[Persona]) -> HarnessAdapter:
        adapters.append(HarnessAdapter(fake.base_url, config, personas))
        return adapters[-1]

    # The config points nowhere: only bots the override built can reach the fake.
    async with telegram_fleet(tmp_path, make_adapter=make, base_url="http://127.0.0.1:9/bot") as w:
        [adapter] = adapters
        assert sorted(adapter.built) == ["telegram:host", "telegram:optimist", "telegram:skeptic"]
        said = await w.fake.user_says(w.group, w.alice, "@skeptic_bot built by whom?")
        await w.handled(said)
        assert [s.bot_username for s in w.fake.sent(w.group)] == ["skeptic_bot"]


class CompressedTime:
    """The fleet's sleep, recorded and cut short, and a clock that moves on by what was cut: a wait
    the adapter took from elsewhere would not be."""

    def __init__(self) -> None:
        self.slept: list[float] = []
        self.skipped = 0.0

    def clock(self) -> float:
        return time.time() + self.skipped

    async def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)
        await asyncio.sleep(min(seconds, 0.01))
        self.skipped += max(0.0, seconds - 0.01)


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")  # RetryAfter() warns in 22.x
async def test_flood_waits_and_chat_pacing_use_the_fleets_sleep(tmp_path: Path) -> None:
    sleep = CompressedTime()
    async with telegram_fleet(tmp_path, sleep=sleep, clock=sleep.clock) as w:
        # A minute of flood control: waited on the fleet's sleep, or this would time out.
        w.fake.fail_next("sendMessage", chat_id=w.group, retry_after=60, bot="skeptic_bot")
        w.voices.lines["skeptic"] = ("Long doubts. " * 400)[:4500]  # two messages, paced apart
        said = await w.fake.user_says(w.group, w.alice, "@skeptic_bot go on at length")
        await w.handled(said)
        assert [c.error_code for c in w.fake.calls_to("sendMessage", "skeptic_bot")] == [429, None, None]
        assert len(w.fake.sent(w.group)) == 2
    assert any(59 < s <= 60 for s in sleep.slept)
    assert any(0 < s <= PACE_SECONDS for s in sleep.slept)


def test_tokens_reach_the_one_masker_with_the_bot_id_kept(tmp_path: Path) -> None:
    token = "7000:guarded-secret-EEEEEEEEEEEEEEEE"
    guard_tokens([token])
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("httpx")  # logs request URLs, token included
    logger.addHandler(handler)
    try:
        logger.warning("HTTP Request: POST %s", f"http://api/bot{token}/getMe")
    finally:
        logger.removeHandler(handler)
    assert stream.getvalue() == f"HTTP Request: POST http://api/bot7000:{MASK}/getMe\n"


def test_the_masking_filter_cleans_the_record_before_any_handler_sees_it() -> None:
    mask = SecretMask(["hunter2-secret", "short"])  # under six characters is no secret: ordinary words
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "login with %s", ("hunter2-secret",), None)
    try:
        raise RuntimeError("bad password hunter2-secret")
    except RuntimeError as exc:
        record.exc_info = (type(exc), exc, exc.__traceback__)
    record.stack_info = "stack: hunter2-secret"
    assert MaskingFilter(mask).filter(record)
    assert record.getMessage() == f"login with {MASK}"
    assert record.exc_text and "hunter2-secret" not in record.exc_text and MASK in record.exc_text
    assert record.stack_info == f"stack: {MASK}"
    formatted = RedactingFormatter(logging.Formatter("%(message)s"), ["a-short-word"]).format(record)
    assert "hunter2-secret" not in formatted and "short" == mask.mask("short")
