"""Reply writing: a prompt (bots.core.prompts) -> LLM -> text chunks, within the breaker and a concurrency cap."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from bots.config import LLMConfig
from bots.core.events import Reply
from bots.core.ports import Chunk, LLMClient, LLMError, LLMRequest, Turn
from bots.core.prompts import GROUND_RULES, build_messages
from bots.llm.breaker import Breaker
from bots.persona import Persona

log = logging.getLogger("botfleet.brain")

__all__ = ["GROUND_RULES", "Brain", "IncompleteReply", "Usage", "build_messages"]


class IncompleteReply(Exception):
    """The stream ended without a finish reason: what arrived must not look like a finished reply."""

    def __init__(self, partial: str):
        self.partial = partial
        super().__init__("reply stream ended without a finish reason")


@dataclass(frozen=True, slots=True)
class Usage:
    persona_id: str
    prompt_tokens: int
    completion_tokens: int
    estimated: bool
    # "platform:user id" of the human the reply was for (None: another persona), for per-user budgets.
    user: str | None = None


class Brain:
    """Writes replies; bounded concurrency so a burst of triggers cannot flood the endpoint."""

    def __init__(
        self,
        client: LLMClient,
        config: LLMConfig,
        *,
        on_usage: Callable[[Usage], None] | None = None,
        breaker: Breaker | None = None,
    ) -> None:
        self.client = client
        self.config = config
        self.on_usage = on_usage
        # After each call that went out: persona id, seconds, error kind (None: success). For metrics.
        self.on_call: Callable[[str, float, str | None], None] | None = None
        self.breaker = breaker or Breaker(config.breaker_failures, config.breaker_seconds)
        self._sem = asyncio.Semaphore(config.max_concurrency)

    def request(self, persona: Persona, history: Sequence[Turn], reply: Reply) -> LLMRequest:
        messages = build_messages(
            persona,
            history,
            instruction=reply.instruction,
            budget_chars=self.config.history_chars,
            answering=reply.reply_to,
        )
        return LLMRequest(
            messages=tuple(messages),
            model=persona.model.name or self.config.model,
            temperature=persona.model.temperature if persona.model.temperature is not None else self.config.temperature,
            max_tokens=persona.model.max_tokens or self.config.max_tokens,
            user=f"{reply.platform}:{reply.to_user}" if reply.to_user else None,
        )

    async def write(self, persona: Persona, request: LLMRequest) -> AsyncIterator[str]:
        """Yields text as it arrives; raises IncompleteReply or LLMError."""
        permit = self.breaker.allow()
        if permit is None:
            raise LLMError("circuit_open", "the LLM endpoint failed repeatedly; resting")
        # Anything that leaves without a verdict (cancellation, the consumer stopping) is neutral.
        kind: str | None = "cancelled"
        started = time.perf_counter()
        try:
            async with self._sem:
                started = time.perf_counter()
                async for part in self._write(persona, request):
                    yield part
            kind = None
        except LLMError as exc:
            kind = exc.kind
            raise
        except IncompleteReply:
            kind = "incomplete"
            raise
        finally:
            self.breaker.record(permit, kind)
            if self.on_call is not None:
                self.on_call(persona.id, time.perf_counter() - started, kind)

    async def _write(self, persona: Persona, request: LLMRequest) -> AsyncIterator[str]:
        parts: list[str] = []
        finish: str | None = None
        usage: Chunk | None = None
        async for chunk in self.client.stream(request):
            if chunk.prompt_tokens is not None:
                usage = chunk
            if chunk.finish_reason:
                finish = chunk.finish_reason
            if chunk.text:
                parts.append(chunk.text)
                yield chunk.text
        text = "".join(parts)
        if self.on_usage is not None:
            if usage is not None:
                self.on_usage(
                    Usage(persona.id, usage.prompt_tokens or 0, usage.completion_tokens or 0, False, request.user)
                )
            else:
                prompt = sum(len(m["content"]) for m in request.messages) // 4 + 1
                self.on_usage(Usage(persona.id, prompt, len(text) // 4 + 1, True, request.user))
        if finish is None:
            raise IncompleteReply(text)
        if finish == "length":
            log.info("reply by %s hit max_tokens", persona.id)
        if not text.strip():
            raise LLMError("empty", "the model returned no text")

    async def close(self) -> None:
        await self.client.close()
