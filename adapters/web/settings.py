"""`adapters.web` in config.yaml: where the web room listens, its chat rooms, and the operator token."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from bots.config import FeedConfig

# The feed channel the web room posts to when config.yaml names none under `feeds.web`.
DEFAULT_FEED = "feed"


class WebConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Loopback unless configured: the room has no accounts, anyone who can reach it can post.
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    # The chat channels of the rooms page.
    rooms: tuple[str, ...] = ("general", "random")
    # Empty: no operator page at all. Give it as ${BOTFLEET_WEB_ADMIN_TOKEN} rather than in the file.
    admin_token: str = ""
    # Messages per channel the page shows when opened (the room's own view; history is the store's).
    backlog: int = Field(default=200, ge=1, le=5000)


def default_feeds() -> tuple[FeedConfig, ...]:
    # A newcomer's first run has no feeds.web section: the feed page still gets its followers.
    return (FeedConfig(channel=DEFAULT_FEED, comments=3, window_seconds=20),)
