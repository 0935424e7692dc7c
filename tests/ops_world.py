"""What the operating tests share: a model client that reports a fixed usage, quick edits of a test fleet's
settings, and saying something in the test room."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from bots.config import FleetConfig
from bots.core.events import Author
from bots.core.ports import Chunk, LLMError, LLMRequest
from tests.conftest import msg

BOB = Author(id="u2", name="bob")
DISCLOSURE = "— AI persona · /about"


class Metered:
    """Replies "fine" and reports a fixed usage, like the API does."""

    name = "metered"

    def __init__(self, prompt: int = 60, completion: int = 40) -> None:
        self.prompt = prompt
        self.completion = completion
        self.calls = 0
        self.down = False

    async def stream(self, request: LLMRequest) -> AsyncIterator[Chunk]:
        self.calls += 1
        if self.down:
            raise LLMError("http_503")
        yield Chunk(text="fine", finish_reason="stop")
        yield Chunk(prompt_tokens=self.prompt, completion_tokens=self.completion)

    async def close(self) -> None:
        return None


def with_llm(fleet: Any, **llm: Any) -> None:
    cfg: FleetConfig = fleet.config
    fleet.config = cfg.model_copy(update={"llm": cfg.llm.model_copy(update=llm)})


def with_rules(fleet: Any, **rules: Any) -> None:
    cfg: FleetConfig = fleet.config
    fleet.config = cfg.model_copy(update={"fleet": cfg.fleet.model_copy(update=rules)})


async def say(fleet: Any, text: str, **kw: Any) -> Any:
    m = msg(text, **kw)
    await fleet.dispatch(m)
    await fleet.drain()
    return fleet.audit[m.key]
