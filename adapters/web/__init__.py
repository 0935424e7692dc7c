"""The web room: the feed, chat rooms and the operator page in a browser (aiohttp, no build step)."""

from adapters.web.adapter import WebAdapter
from adapters.web.settings import WebConfig

__all__ = ["WebAdapter", "WebConfig"]
