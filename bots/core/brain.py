"""Reply writing: a prompt (bots.core.prompts) -> LLM -> text chunks, within the breaker and a concurrency cap."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, replace
from typing import Any

from bots.config import LLMConfig
from bots.core.events import Reply
from bots.core.images import sees_images, text_of, unseen
from bots.core.ports import Chunk, LLMClient, LLMError, LLMRequest, Turn
from bots.core.prompts import CANNOT_SEE_RULE, GROUND_RULES, build_messages
from bots.core.text import valid_unicode
from bots.llm.breaker import Breaker
from bots.llm.watch import CutStreams
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


# The share of a reply's time it must still have when it gets an LLM slot to be worth sending.
LATE_SLOT = 0.1


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
        self.timeout_seconds = config.local_timeout_seconds if client.name == "local" else config.timeout_seconds
        self.cut_streams = CutStreams(getattr(client, "endpoint", client.name))

    def request(self, persona: Persona, history: Sequence[Turn], reply: Reply, *, memory: str = "") -> LLMRequest:
        messages = build_messages(
            persona,
            history,
            instruction=reply.instruction,
            memory=memory,
            budget_chars=self.config.history_chars,
            answering=reply.reply_to,
        )
        if not self.sees_images(persona):
            messages = unseen(messages, CANNOT_SEE_RULE)
        return LLMRequest(
            messages=tuple(messages),
            model=persona.model.name or self.config.model,
            temperature=persona.model.temperature if persona.model.temperature is not None else self.config.temperature,
            max_tokens=persona.model.max_tokens or self.config.max_tokens,
            user=f"{reply.platform}:{reply.to_user}" if reply.to_user else None,
        )

    def sees_images(self, persona: Persona) -> bool:
        return sees_images(persona, self.config, self.client.name)

    async def write(self, persona: Persona, request: LLMRequest) -> AsyncIterator[str]:
        """Yields text as it arrives; raises IncompleteReply or LLMError.

        The reply is resolved within llm.timeout_seconds of this call, waiting for a slot and every
        retry included (time the consumer spends on a chunk does not count): one that gets no slot
        in time fails as "busy", one whose endpoint is too slow as "timeout"."""
        permit = self.breaker.allow()
        if permit is None:
            raise LLMError("circuit_open", "the LLM endpoint failed repeatedly; resting")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_seconds
        # Anything that leaves without a verdict (cancellation, the consumer stopping) is neutral.
        kind: str | None = "cancelled"
        started = loop.time()
        try:
            await self._slot(deadline)
            try:
                started = loop.time()
                async with aclosing(self._write(persona, valid_request(request), deadline)) as parts:
                    async for part in parts:
                        yield part
            finally:
                self._sem.release()
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
                self.on_call(persona.id, loop.time() - started, kind)

    async def _slot(self, deadline: float) -> None:
        try:
            async with asyncio.timeout_at(deadline):
                await self._sem.acquire()
        except TimeoutError:
            raise LLMError("busy", f"no free LLM slot within {self.timeout_seconds:g}s") from None
        if deadline - asyncio.get_running_loop().time() < self.timeout_seconds * LATE_SLOT:
            # A slot freed just before this reply's time runs out cannot write it: sending the request
            # would only load an endpoint that is already slow, and its "timeout" would count against
            # the endpoint although the wait was ours.
            self._sem.release()
            raise LLMError("busy", f"no LLM slot in time within {self.timeout_seconds:g}s")

    async def _write(self, persona: Persona, request: LLMRequest, deadline: float) -> AsyncGenerator[str, None]:
        parts: list[str] = []
        finish: str | None = None
        usage: Chunk | None = None
        token = self.cut_streams.started()
        async with aclosing(_until(self.client.stream(request), deadline)) as chunks:
            async for chunk in chunks:
                if chunk.prompt_tokens is not None:
                    usage = chunk
                if chunk.finish_reason:
                    finish = chunk.finish_reason
                if chunk.text:
                    parts.append(chunk.text)
                    yield chunk.text
        text = "".join(parts)
        self._count(persona, request, usage, text)
        if finish is None:
            self.cut_streams.ended_early(token, persona.id)
            raise IncompleteReply(text)
        if finish == "length":
            log.info("reply by %s hit max_tokens", persona.id)
        if not text.strip():
            raise LLMError("empty", "the model returned no text")

    def _count(self, persona: Persona, request: LLMRequest, usage: Chunk | None, text: str) -> None:
        if self.on_usage is None:
            return
        if usage is not None:
            self.on_usage(
                Usage(persona.id, usage.prompt_tokens or 0, usage.completion_tokens or 0, False, request.user)
            )
        else:
            # A photo costs roughly a few hundred tokens whatever its text; this is an estimate anyway.
            prompt = sum(len(text_of(m["content"])) for m in request.messages) // 4 + 1
            self.on_usage(Usage(persona.id, prompt, len(text) // 4 + 1, True, request.user))

    async def close(self) -> None:
        await self.client.close()


def valid_request(request: LLMRequest) -> LLMRequest:
    """The request with valid Unicode only: history stored before text was cleaned at the door (or
    by an older version) must not fail every later request that includes it."""
    messages = tuple({**m, "content": _valid_content(m["content"])} for m in request.messages)
    return request if messages == request.messages else replace(request, messages=messages)


def _valid_content(content: Any) -> Any:
    if isinstance(content, str):
        return valid_unicode(content)
    return [{**p, "text": valid_unicode(p["text"])} if p.get("type") == "text" else p for p in content]


async def _until(chunks: AsyncIterator[Chunk], deadline: float) -> AsyncGenerator[Chunk, None]:
    """The client's chunks while its waits fit before `deadline` (loop time); only the time spent
    waiting for the endpoint counts, never the time the consumer holds a chunk."""
    loop = asyncio.get_running_loop()
    budget = deadline - loop.time()
    try:
        while True:
            waited = loop.time()
            try:
                async with asyncio.timeout(max(budget, 0.0)):
                    chunk = await anext(chunks)
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise LLMError("timeout", "no complete answer within llm.timeout_seconds") from None
            budget -= loop.time() - waited
            yield chunk
    finally:
        closing = getattr(chunks, "aclose", None)
        if closing is not None:
            await closing()
