"""A client that writes without a model, for `botfleet simulate` and dry runs."""

from __future__ import annotations

from collections.abc import AsyncIterator

from bots.core.memory.summarise import MARKER, canned_notes
from bots.core.ports import Chunk, LLMRequest


class CannedClient:
    """Writes without a model: `botfleet simulate` and dry runs never call an LLM."""

    name = "canned"

    def __init__(self, text: str = "(simulated reply)"):
        self.text = text

    async def stream(self, request: LLMRequest) -> AsyncIterator[Chunk]:
        if request.messages and request.messages[0]["content"].startswith(MARKER):
            # A memory update: the canned summariser, so simulate shows notes worth reading.
            yield Chunk(text=canned_notes(request), finish_reason="stop")
            return
        yield Chunk(text=self.text, finish_reason="stop")

    async def close(self) -> None:
        return None
