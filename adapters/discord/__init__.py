"""Discord through discord.py: persona accounts and host webhooks, slash commands, forum feeds."""

from adapters.discord.adapter import CUT_MARK, DiscordAdapter, webhook_username

__all__ = ["CUT_MARK", "DiscordAdapter", "webhook_username"]
