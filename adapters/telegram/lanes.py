"""Pacing: Telegram's flood limits and bans apply per bot and chat, so each (bot, chat) is a lane
with its own lock, 429 pause and "thrown out" flag.

Every call books its slot with the fleet's pacer first: about one message per second per chat, and
20 per minute per group for everything a bot does there. Any process may send as any bot, so with a
Redis store the pacer is shared and these limits (and a 429's retry_after, recorded in the pacer)
hold for all processes together. PTB's AIORateLimiter stays underneath as each process's safety net.

Time comes from the fleet (its clock and sleep), so tests and outside harnesses control it; the
fleet clock is wall time by default, which is fine for intervals of seconds.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TypeVar

from telegram.constants import ChatAction
from telegram.error import Forbidden, RetryAfter, TelegramError

from adapters.telegram.places import Place
from adapters.telegram.roster import BotAccount
from bots.core.ports import Pace, Pacer

log = logging.getLogger("botfleet.telegram")

T = TypeVar("T")

PACE_SECONDS = 1.0  # Telegram: about one message per second per chat
GROUP_MESSAGES, GROUP_SECONDS = 20, 60.0  # and no more than 20 per minute in a group
TYPING_EVERY = 4.0  # a typing action shows for about 5 s
FLOOD_ATTEMPTS = 4  # 429s in a row before a message is given up

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[object]]


def retry_seconds(exc: RetryAfter) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 22.x warns that retry_after will become a timedelta
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


@dataclass(frozen=True, slots=True)
class Limits:
    """Telegram's flood limits for one bot; outside harnesses (and tests) may scale them."""

    chat_seconds: float = PACE_SECONDS
    group_messages: int = GROUP_MESSAGES
    group_seconds: float = GROUP_SECONDS


@dataclass(eq=False)
class Lane:
    """One bot in one chat."""

    key: str  # its pacer key: "<account>:<chat id>"
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Clock time before which this process knows the lane is paused by a 429: typing waits for it.
    paused_until: float = 0.0
    forbidden: bool = False


class Lanes:
    def __init__(self, clock: Clock, sleep: Sleep, pacer: Pacer, limits: Limits | None = None) -> None:
        self.clock = clock
        self.sleep = sleep
        self.pacer = pacer
        self.limits = limits or Limits()
        self._lanes: dict[tuple[str, int], Lane] = {}

    def get(self, bot: BotAccount, chat_id: int) -> Lane:
        key = (bot.account, chat_id)
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = Lane(f"{bot.account}:{chat_id}")
        return lane

    def heard_from(self, bot: BotAccount, chat_id: int) -> None:
        lane = self._lanes.get((bot.account, chat_id))
        if lane is not None:
            lane.forbidden = False  # it hears from the chat again: re-added, or unblocked

    def forbid(self, bot: BotAccount, lane: Lane, chat_id: int, exc: Forbidden) -> None:
        if not lane.forbidden:
            lane.forbidden = True
            # A user who never opened a DM is routine (private notices fall back to the chat); a group
            # that removed the bot is worth a warning.
            log.log(
                logging.INFO if chat_id > 0 else logging.WARNING,
                "telegram: %s may not post in chat %s (%s); skipping that chat until it hears from it again",
                bot.label,
                chat_id,
                exc.message,
            )

    def paces(self, lane: Lane, chat_id: int, *, pace: bool) -> list[Pace]:
        """What a call spends: its lane (a message slot, or only a wait for a 429 pause there) and,
        in a group, one of the bot's 20 a minute there (edits, reactions and deletes count too)."""
        limits = self.limits
        paces = [Pace(lane.key, limits.chat_seconds if pace else 0.0)]
        if chat_id < 0:
            interval = limits.group_seconds / limits.group_messages
            paces.append(Pace(f"{lane.key}:group", interval, limits.group_messages))
        return paces

    async def call(self, bot: BotAccount, chat_id: int, make: Callable[[], Awaitable[T]], *, pace: bool) -> T | None:
        """One Bot API call within the lane's limits; None when the chat is closed to this bot.

        A 429 means Telegram did not take the request, so it is made again after retry_after: the
        message then exists once. Anything else (a timeout, say) may have gone through: no retry.
        """
        lane = self.get(bot, chat_id)
        async with lane.lock:
            for _ in range(FLOOD_ATTEMPTS):
                if lane.forbidden:
                    return None
                wait = await self.pacer.reserve(self.paces(lane, chat_id, pace=pace), self.clock())
                if wait > 0:
                    await self.sleep(wait)
                try:
                    result = await make()
                except RetryAfter as exc:
                    seconds = await self.flooded(lane, exc)
                    log.warning(
                        "telegram: %s hit flood control in chat %s; pausing there for %.0f s",
                        bot.label,
                        chat_id,
                        seconds,
                    )
                    continue
                except Forbidden as exc:
                    self.forbid(bot, lane, chat_id, exc)
                    return None
                return result
        log.warning("telegram: %s gave up on chat %s after repeated flood control", bot.label, chat_id)
        return None

    async def flooded(self, lane: Lane, exc: RetryAfter) -> float:
        """Pause the lane for retry_after, in every process sharing the pacer; returns the seconds."""
        seconds = retry_seconds(exc)
        now = self.clock()
        lane.paused_until = max(lane.paused_until, now + seconds)
        await self.pacer.pause(lane.key, seconds, now)
        return seconds

    async def typing(self, bot: BotAccount, place: Place) -> bool:
        """One typing action; False when the chat is closed to the bot, so nothing is worth writing."""
        assert bot.app is not None
        chat_id = place.chat_id
        lane = self.get(bot, chat_id)
        if lane.forbidden:
            return False
        if self.clock() < lane.paused_until:
            return True  # paused by flood control: do not spend the budget on typing
        try:
            await bot.app.bot.send_chat_action(chat_id, ChatAction.TYPING, message_thread_id=place.thread)
        except Forbidden as exc:
            self.forbid(bot, lane, chat_id, exc)
            return False
        except RetryAfter as exc:
            await self.flooded(lane, exc)
        except TelegramError as exc:
            log.debug("telegram: typing in %s failed: %s", chat_id, exc)
        return True

    async def keep_typing(self, bot: BotAccount, place: Place) -> None:
        while True:
            await self.sleep(TYPING_EVERY)
            if not await self.typing(bot, place):
                return
