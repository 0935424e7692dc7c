"""Telegram through python-telegram-bot: a host bot and persona bots, forum topics, channel feeds."""

from adapters.telegram.adapter import TelegramAdapter

__all__ = ["TelegramAdapter"]
