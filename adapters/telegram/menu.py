"""The "/" menu Telegram clients show, generated from the one command table (bots.core.commands).

Telegram picks the most specific scope a bot registered: in private chats "all private chats"
before "default", in groups "all group chats" before "default". Commands that make no sense in a
private chat (a channel mute, say) are left out of the private menu. Groups get their own scope as
well as the default, so a group menu left behind by an older version cannot shadow the new one.
"""

from __future__ import annotations

import logging

from telegram import (
    BotCommand,
    BotCommandScope,
    BotCommandScopeAllGroupChats,
    BotCommandScopeAllPrivateChats,
    BotCommandScopeDefault,
)
from telegram.error import TelegramError

from adapters.telegram.roster import BotAccount
from bots.core.commands import COMMANDS

log = logging.getLogger("botfleet.telegram")

DESCRIPTION_LIMIT = 256


def menus() -> list[tuple[BotCommandScope, list[BotCommand]]]:
    everywhere = [BotCommand(spec.name, spec.help[:DESCRIPTION_LIMIT]) for spec in COMMANDS.values()]
    private = [
        BotCommand(spec.name, spec.help[:DESCRIPTION_LIMIT]) for spec in COMMANDS.values() if spec.in_private_chats
    ]
    return [
        (BotCommandScopeDefault(), everywhere),
        (BotCommandScopeAllGroupChats(), everywhere),
        (BotCommandScopeAllPrivateChats(), private),
    ]


async def register_menus(bot: BotAccount) -> None:
    assert bot.app is not None
    for scope, commands in menus():
        try:
            await bot.app.bot.set_my_commands(commands, scope=scope)
        except TelegramError as exc:
            log.warning("telegram: %s could not register its commands (%s): %s", bot.label, scope.type, exc)
            return
