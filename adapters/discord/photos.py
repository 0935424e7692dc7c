"""Photos on Discord: image attachments and image embeds become the core's ImagePart (other files are
named in words), and are fetched only from Discord's CDN (or the configured API host, a proxy or a
test double) when a reply that can see them is written."""

from __future__ import annotations

import discord

from bots.config import DiscordConfig, LLMConfig
from bots.core.events import ImagePart
from bots.core.images import admit, describe_file
from bots.core.ports import ImageUnavailable
from bots.media.fetch import Fetcher, origin
from bots.media.shrink import as_data_url

CDN_HOSTS = frozenset({("cdn.discordapp.com", 443), ("media.discordapp.net", 443)})
_EXT = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "gif": "image/gif", "webp": "image/webp"}


def _mime(content_type: str | None, filename: str) -> str:
    if content_type:
        return content_type.split(";")[0].strip().lower()
    return _EXT.get(filename.rsplit(".", 1)[-1].lower(), "application/octet-stream")


def photos_of(message: discord.Message, config: LLMConfig) -> tuple[tuple[ImagePart, ...], tuple[str, ...]]:
    """A message's photos within the limits, and its other files in words."""
    photos: list[ImagePart] = []
    files: list[str] = []
    for a in message.attachments:
        mime = _mime(a.content_type, a.filename)
        if mime.startswith("image/"):
            photos.append(ImagePart(mime=mime, size=a.size, alt=a.description or a.title or "", ref=a.url))
        else:
            files.append(describe_file(mime, a.size))
    for embed in message.embeds:
        # A posted image link unfurls as an image embed; Discord's media proxy serves it.
        if embed.type == "image":
            url = embed.thumbnail.proxy_url or embed.image.proxy_url
            if url:
                photos.append(ImagePart(mime=_mime(None, url.split("?")[0]), alt=embed.title or "", ref=url))
    return admit(photos, config, files)


def photo_title(message: discord.Message) -> str:
    """A title for a post with no words: its first photo's alt text, else "Photo" ("" without one)."""
    for a in message.attachments:
        if _mime(a.content_type, a.filename).startswith("image/"):
            return a.description or "Photo"
    return ""


class DiscordPhotos:
    def __init__(self, config: DiscordConfig, llm: LLMConfig) -> None:
        hosts = set(CDN_HOSTS)
        if config.api_base_url:
            hosts.add(origin(config.api_base_url))
        self.fetcher = Fetcher(frozenset(hosts), max_bytes=llm.image_max_bytes, timeout=llm.image_fetch_seconds)

    async def image_url(self, part: ImagePart, max_side: int) -> str:
        if part.data:
            return await as_data_url(part.data, max_side)
        if not part.ref:
            raise ImageUnavailable("no_source")
        data, _ = await self.fetcher.fetch(part.ref)
        return await as_data_url(data, max_side)

    async def close(self) -> None:
        await self.fetcher.close()
