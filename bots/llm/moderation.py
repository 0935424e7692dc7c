"""The OpenAI moderation endpoint as a Moderator (bots/core/safety/moderator.py).

`omni-moderation-latest` answers in a few hundred milliseconds over the network, so the fleet holds
a reply back until it is complete before asking (see bots/core/safety/outgoing.py). Any failure
(timeout, 429, 5xx, an endpoint without /moderations) falls back to the local lists for that text:
moderation never fails open.
"""

from __future__ import annotations

import logging
from typing import Any

from bots.core.safety.lexicon import language
from bots.core.safety.moderator import LocalModerator, Verdict

log = logging.getLogger("botfleet.moderation")

MODEL = "omni-moderation-latest"

# OpenAI's category names (by prefix: "self-harm/intent" is self-harm) -> ours.
CATEGORY_OF = {
    "self-harm": "self_harm",
    "violence": "violence",
    "harassment": "harassment",
    "hate": "hate",
    "sexual": "sexual",
}


class OpenAIModerator:
    name = "openai"
    cheap = False

    def __init__(
        self,
        *,
        api_key: str | None,
        base_url: str | None,
        timeout: float = 5.0,
        fallback: LocalModerator | None = None,
    ) -> None:
        import openai

        self._client = openai.AsyncOpenAI(
            api_key=api_key or "not-needed", base_url=base_url, timeout=timeout, max_retries=1
        )
        self.fallback = fallback or LocalModerator()

    async def check(self, text: str) -> Verdict:
        if not text.strip():
            return Verdict()
        try:
            response = await self._client.moderations.create(model=MODEL, input=text)
        except Exception as exc:
            # The exception type only: its message may quote the request.
            log.warning("moderation endpoint failed (%s); the local lists decide", type(exc).__name__)
            return self.fallback.check_now(text)
        return Verdict(categories_of(response), language(text))

    async def close(self) -> None:
        await self._client.close()


def categories_of(response: Any) -> tuple[str, ...]:
    found: list[str] = []
    for result in response.results:
        if not result.flagged:
            continue
        flags = result.categories.model_dump(by_alias=True)
        for name, on in flags.items():
            ours = CATEGORY_OF.get(str(name).split("/")[0])
            if on and ours and ours not in found:
                found.append(ours)
    return tuple(found)
