"""Discord through discord.py: persona accounts and host webhooks, slash commands, forum feeds.

See adapters.discord.adapter for how the parts fit, and `DiscordAdapter.make_client`, the one place
every discord.Client is built (the seam for outside test harnesses).
"""

from adapters.discord.adapter import DiscordAdapter
from adapters.discord.common import CUT_MARK, webhook_username

__all__ = ["CUT_MARK", "DiscordAdapter", "webhook_username"]
