"""Showing a reply's model the photos of the message it answers, when that model can see: the
adapter that received them fetches and shrinks them now (never while deciding), and they join the
request as image_url parts. A photo that cannot be fetched leaves its placeholder and nothing else."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from bots.core.events import Reply
from bots.core.images import with_images
from bots.core.ports import Adapter, ImageSource, ImageUnavailable, LLMRequest
from bots.persona import Persona

if TYPE_CHECKING:
    from bots.core.fleet import Fleet

log = logging.getLogger("botfleet.images")


async def show_photos(
    fleet: Fleet, adapter: Adapter, persona: Persona, request: LLMRequest, reply: Reply
) -> LLMRequest:
    if not reply.reply_to or not isinstance(adapter, ImageSource):
        return request
    key = f"{reply.platform}:{reply.reply_to}"
    parts = fleet.gallery.get(key, fleet.clock())
    if not parts or not fleet.brain.sees_images(persona):
        return request
    cfg = fleet.config.llm
    urls = fleet.gallery.prepared(key)
    if urls is None:
        results = await asyncio.gather(
            *(adapter.image_url(p, cfg.image_max_side) for p in parts), return_exceptions=True
        )
        kept: list[str] = []
        for result in results:
            if isinstance(result, str):
                kept.append(result)
            elif isinstance(result, ImageUnavailable):
                # The kind only: the reason may not carry a URL (Telegram's contain the bot token).
                log.info("a photo for %s's reply was left out: %s", persona.id, result.kind)
            elif isinstance(result, BaseException):
                log.warning("a photo for %s's reply was left out: %s", persona.id, type(result).__name__)
        urls = tuple(kept)
        fleet.gallery.keep_prepared(key, urls)
    if not urls:
        return request
    return replace(request, messages=tuple(with_images(request.messages, urls, cfg.image_detail)))
