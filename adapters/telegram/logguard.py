"""Logs must never carry a bot token: PTB puts it in every request URL (which httpx logs) and in
InvalidToken's message. The masking itself is the fleet's one masker (bots.ops.logs); this module
says what to mask and where Telegram's libraries log it."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from bots.ops.logs import mask_secrets

# Loggers that see request URLs or token errors; each gets the masking filter on the logger itself
# (a logger's filters do not apply to records propagated from its children).
TOKEN_LOGGERS = (
    "httpx",
    "httpcore",
    "telegram",
    "telegram.Bot",
    "telegram.ext",
    "telegram.ext.ExtBot",
    "telegram.ext.Application",
    "telegram.ext.Updater",
    "telegram.ext.AIORateLimiter",
    "telegram.request.BaseRequest",
    "telegram.request.HTTPXRequest",
    "asyncio",
)


class DropHandled429(logging.Filter):
    """AIORateLimiter logs every re-raised 429 as an error with a traceback; the adapter handles it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Rate limit hit after maximum of")


_HANDLED_429 = DropHandled429()


def token_secret(token: str) -> str:
    """The part of a bot token that is secret: the bot id before ":" is public and useful in logs."""
    return token.partition(":")[2] or token


def guard_tokens(tokens: Iterable[str]) -> None:
    mask_secrets([token_secret(t) for t in tokens], TOKEN_LOGGERS)
    for name in ("httpx", "httpcore"):
        quiet = logging.getLogger(name)
        if quiet.level < logging.WARNING:
            quiet.setLevel(logging.WARNING)
    logging.getLogger("telegram.ext.AIORateLimiter").addFilter(_HANDLED_429)
