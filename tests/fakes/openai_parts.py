"""How the real chat completions API checks message content parts, for the fake endpoint: a content
is a string or a list of parts; a part is {"type": "text", "text": str} or {"type": "image_url",
"image_url": {"url": data URL or https URL, "detail": low|high|auto}}; only user messages may hold
images. A model that cannot see refuses image parts the way OpenAI does."""

from __future__ import annotations

import re
from typing import Any

DATA_URL = re.compile(r"data:image/(jpeg|png|gif|webp);base64,[A-Za-z0-9+/]+={0,2}")
DETAILS = ("low", "high", "auto")


class BadContent(ValueError):
    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


def image_urls(body: dict[str, Any]) -> list[str]:
    """Every image URL in a request body, in order."""
    urls: list[str] = []
    for m in body.get("messages", []):
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, list):
            urls += [p["image_url"]["url"] for p in content if isinstance(p, dict) and p.get("type") == "image_url"]
    return urls


def check_content(body: dict[str, Any], *, vision: bool) -> None:
    """Raises BadContent for what the real API answers with a 400."""
    for i, m in enumerate(body.get("messages", [])):
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, str) or content is None:
            continue
        if not isinstance(content, list) or not content:
            raise BadContent("Invalid type for 'messages[].content'.", f"messages.[{i}].content")
        for j, part in enumerate(content):
            _check_part(m.get("role"), part, f"messages.[{i}].content.[{j}]", vision)


def _check_part(role: Any, part: Any, param: str, vision: bool) -> None:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "text":
        if not isinstance(part.get("text"), str):
            raise BadContent("Missing required parameter: 'text'.", f"{param}.text")
        return
    if kind != "image_url":
        raise BadContent(f"Invalid value: {kind!r}. Supported values are: 'text' and 'image_url'.", f"{param}.type")
    if role != "user":
        raise BadContent(f"Image URLs are only allowed for messages with role 'user', not {role!r}.", param)
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else None
    if not isinstance(url, str) or not (DATA_URL.fullmatch(url) or url.startswith("https://")):
        raise BadContent("Invalid image URL: expected a base64 data URL or an https URL.", f"{param}.image_url.url")
    if isinstance(image, dict) and "detail" in image and image["detail"] not in DETAILS:
        raise BadContent(f"Invalid value: {image['detail']!r}. Supported values are: {DETAILS}.", f"{param}.detail")
    if not vision:
        raise BadContent("Invalid content type. image_url is only supported by certain models.", param)
