"""Photos in conversations, without any I/O: which attachments a message keeps (and how the rest is
named), the placeholder history keeps instead of bytes, whether a persona's model can see, and how
seen photos join the request as OpenAI `image_url` content parts.

Fetching and shrinking happen outside the core, in the adapter that received the photo
(`ImageSource` in bots.core.ports, helpers in bots/media/), and only when a reply is written.

`llm.vision: auto` decides by the model's name: the names in `VISION_NAMES` (OpenAI gpt-4o, gpt-4.1,
gpt-5, o1/o3/o4; llava, *vision*, *-vl* such as qwen2.5-vl, pixtral, gemma3, llama4, minicpm-v,
moondream; claude and gemini behind a proxy) see; others, and the local model always, get the
placeholder and are told they cannot see images.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence
from typing import Any

from bots.config import LLMConfig
from bots.core.events import Event, ImagePart, Message
from bots.persona import Persona

# What the chat APIs and Pillow both take; anything else is named in text instead.
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})

VISION_NAMES = re.compile(
    r"gpt-4o|gpt-4\.1|gpt-4-turbo|gpt-4-vision|gpt-5|chatgpt-4o|(^|/)o1(?!-mini)|(^|/)o3(?!-mini)|(^|/)o4"
    r"|llava|vision|[-_.]vl\b|[-_.]vl[-_:.]|qwen[\w.]*vl|pixtral|gemma-?3|llama-?4|minicpm-v|moondream"
    r"|claude|gemini",
    re.IGNORECASE,
)

# History keeps these words, never bytes. The blind form is what a model that cannot see is shown.
_PLACEHOLDER = re.compile(r"\[photo(?:: '([^'\[\]\n]*)')?\]")
CANNOT_SEE = "you cannot see images"


def sees_images(persona: Persona, config: LLMConfig, client: str) -> bool:
    """Whether this persona's replies are shown photos: never with the local model; the persona's own
    `model.vision`, else `llm.vision`, else (auto) the persona's model name."""
    if client == "local":
        return False
    if persona.model.vision is not None:
        return persona.model.vision
    if isinstance(config.vision, bool):
        return config.vision
    return bool(VISION_NAMES.search(persona.model.name or config.model))


def _mb(size: int) -> str:
    if size >= 1_000_000:
        return f"{size / 1_000_000:.0f} MB"
    if size >= 1000:
        return f"{size / 1000:.0f} kB"
    return f"{size} bytes"


def describe_file(mime: str, size: int = 0, name: str = "") -> str:
    """A file the fleet does not pass on, in words: "a 40 MB video", "a PDF document"."""
    major, _, minor = (mime or "").lower().partition("/")
    kinds = {"video": "video", "audio": "audio clip", "image": "image"}
    if major in kinds:
        kind = kinds[major]
    elif minor == "pdf":
        kind = "PDF document"
    else:
        kind = "file"
    kind = f"{_mb(size)} {kind}" if size else kind
    article = "an" if kind[0] in "aeiou8" else "a"
    return f"{article} {kind}" + (f" ({name[:60]})" if name else "")


def admit(
    photos: Iterable[ImagePart], config: LLMConfig, files: Sequence[str] = ()
) -> tuple[tuple[ImagePart, ...], tuple[str, ...]]:
    """The photos a message keeps (supported type, within the size limit, at most the configured
    count) and everything else named in words."""
    kept: list[ImagePart] = []
    named = list(files)
    extra = 0
    for part in photos:
        if part.mime not in IMAGE_TYPES or part.size > config.image_max_bytes:
            named.append(describe_file(part.mime, part.size))
        elif len(kept) >= config.images_per_message:
            extra += 1
        else:
            kept.append(part)
    if extra:
        named.append(f"{extra} more photo{'s' if extra > 1 else ''}")
    return tuple(kept), tuple(named)


def placeholder(part: ImagePart) -> str:
    # No quote or bracket inside, so the placeholder reads back unambiguously (see unseen).
    alt = " ".join(part.alt.replace("'", "’").replace("[", "(").replace("]", ")").split())[:120]
    return f"[photo: '{alt}']" if alt else "[photo]"


def turn_text(msg: Message) -> str:
    """What history keeps of a message: its words, a placeholder per photo, other files named."""
    extras = [placeholder(p) for p in msg.images] + [f"[{f}]" for f in msg.files]
    # A Telegram caption is both the text and the photo's alt text: said once, in the placeholder.
    text = "" if len(msg.images) == 1 and msg.images[0].alt.strip() == msg.text.strip() else msg.text
    return "\n".join(x for x in (text, *extras) if x)


def _blind_text(text: str) -> str:
    def blind(m: re.Match[str]) -> str:
        alt = m.group(1)
        return f"[photo: '{alt}', {CANNOT_SEE}]" if alt else f"[photo, {CANNOT_SEE}]"

    return _PLACEHOLDER.sub(blind, text)


def unseen(messages: Sequence[dict[str, Any]], honesty: str) -> list[dict[str, Any]]:
    """The request for a model that cannot see: each placeholder says so, and the system prompt tells
    the persona to be honest about it (only when there is a photo at all)."""
    out = [dict(m) for m in messages]
    changed = False
    for m in out:
        if m["role"] != "system" and isinstance(m["content"], str):
            text = _blind_text(m["content"])
            changed = changed or text != m["content"]
            m["content"] = text
    if changed and out and out[0]["role"] == "system":
        out[0]["content"] = f"{out[0]['content']}\n\n{honesty}"
    return out


def with_images(messages: Sequence[dict[str, Any]], urls: Sequence[str], detail: str) -> list[dict[str, Any]]:
    """The request with the photos as `image_url` parts of the last user message (the one answered)."""
    out = [dict(m) for m in messages]
    if not urls:
        return out
    last = max((i for i, m in enumerate(out) if m["role"] == "user"), default=None)
    if last is None:
        out.append({"role": "user", "content": ""})
        last = len(out) - 1
    text = out[last]["content"]
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}] if isinstance(text, str) else list(text)
    parts += [{"type": "image_url", "image_url": {"url": url, "detail": detail}} for url in urls]
    out[last]["content"] = parts
    return out


def text_of(content: Any) -> str:
    """The words of a message's content, whether a string or a list of parts."""
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")


def without_bytes(event: Event) -> Event:
    """The event with uploaded photo bytes dropped (references and captions stay)."""
    if not isinstance(event, Message) or not any(p.data for p in event.images):
        return event
    return dataclasses.replace(event, images=tuple(dataclasses.replace(p, data=b"") for p in event.images))
