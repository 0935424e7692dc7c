"""Photos on Telegram: a photo message (its largest size within the limit) and image documents become
the core's ImagePart by file id, and are fetched with getFile from the Bot API's file host when a
reply that can see them is written. The file URL holds the bot token: it is fetched here, shrunk into
a data URL, and never logged, so the token never reaches the model endpoint."""

from __future__ import annotations

from telegram import Message as TgMessage
from telegram.error import TelegramError

from adapters.telegram.roster import Roster
from bots.config import LLMConfig
from bots.core.events import ImagePart
from bots.core.images import admit, describe_file
from bots.core.ports import ImageUnavailable
from bots.media.fetch import Fetcher, origin
from bots.media.shrink import as_data_url


def photos_of(msg: TgMessage, account: str, config: LLMConfig) -> tuple[tuple[ImagePart, ...], tuple[str, ...]]:
    """A message's photos within the limits, and its other files in words."""
    caption = msg.caption or ""
    photos: list[ImagePart] = []
    files: list[str] = []
    if msg.photo:
        # Telegram sends each photo in several sizes: the largest that fits the limit.
        fitting = [p for p in msg.photo if (p.file_size or 0) <= config.image_max_bytes]
        if fitting:
            best = max(fitting, key=lambda p: p.width * p.height)
            photos.append(ImagePart("image/jpeg", best.file_size or 0, caption, best.file_id, account=account))
        else:
            files.append(describe_file("image/jpeg", max(p.file_size or 0 for p in msg.photo)))
    if msg.animation is not None:
        files.append(describe_file(msg.animation.mime_type or "video/mp4", msg.animation.file_size or 0))
    elif msg.document is not None:
        doc = msg.document
        mime = (doc.mime_type or "application/octet-stream").lower()
        if mime.startswith("image/"):
            photos.append(ImagePart(mime, doc.file_size or 0, caption, doc.file_id, account=account))
        else:
            files.append(describe_file(mime, doc.file_size or 0, doc.file_name or ""))
    for media, mime in ((msg.video, "video/mp4"), (msg.video_note, "video/mp4"), (msg.audio, "audio/mpeg")):
        if media is not None:
            files.append(describe_file(getattr(media, "mime_type", None) or mime, media.file_size or 0))
    if msg.voice is not None:
        files.append("a voice message")
    if msg.sticker is not None:
        files.append(f"a sticker {msg.sticker.emoji or ''}".strip())
    return admit(photos, config, files)


class TelegramPhotos:
    def __init__(self, roster: Roster, llm: LLMConfig) -> None:
        self.roster = roster
        self.max_bytes = llm.image_max_bytes
        self.fetcher = Fetcher(frozenset(), max_bytes=llm.image_max_bytes, timeout=llm.image_fetch_seconds)

    async def image_url(self, part: ImagePart, max_side: int) -> str:
        if part.data:
            return await as_data_url(part.data, max_side)
        # File ids belong to the bot that received them.
        bot = self.roster.get(part.account)
        if bot is None or bot.app is None or not part.ref:
            raise ImageUnavailable("no_bot")
        try:
            file = await bot.app.bot.get_file(part.ref)
        except TelegramError as exc:
            raise ImageUnavailable(f"get_file:{type(exc).__name__}") from None
        if (file.file_size or 0) > self.max_bytes:
            raise ImageUnavailable("too_big")
        if not file.file_path:
            raise ImageUnavailable("no_file_path")
        data, _ = await self.fetcher.fetch(file.file_path, frozenset({origin(bot.app.bot.base_file_url)}))
        return await as_data_url(data, max_side)

    async def close(self) -> None:
        await self.fetcher.close()
