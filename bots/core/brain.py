"""Prompt assembly and reply writing: persona + examples + recent history -> LLM -> text chunks."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, replace

from bots.config import LLMConfig
from bots.core.events import Reply
from bots.core.ports import Chunk, LLMClient, LLMError, LLMRequest, Turn
from bots.core.text import valid_unicode
from bots.llm.breaker import Breaker
from bots.llm.watch import CutStreams
from bots.persona import Persona

log = logging.getLogger("botfleet.brain")

_NAME_OK = re.compile(r"[^a-zA-Z0-9_-]")

GROUND_RULES = (
    "You are {name}, an AI persona in a group chat with people and other AI personas. "
    "Stay in character. Answer in plain text, briefly (2-4 sentences unless asked for more). "
    "Do not prefix your reply with your name. Never claim to be human; if asked, say you are an AI persona. "
    "Do not @mention anyone."
)


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


def _speaker_name(name: str) -> str:
    # The API rejects message names outside ^[a-zA-Z0-9_-]{1,64}$, so names go in the text instead.
    return _NAME_OK.sub("_", name)[:64] or "user"


def build_messages(
    persona: Persona,
    history: Sequence[Turn],
    *,
    instruction: str = "",
    budget_chars: int = 4000,
) -> list[dict[str, str]]:
    system = persona.prompt.strip() + "\n\n" + GROUND_RULES.format(name=persona.name)
    if persona.sponsor:
        system += f" You speak for {persona.sponsor}; say so when relevant."
    if instruction:
        system += "\n\n" + instruction.strip()
    messages: list[dict[str, str]] = [{"role": "system", "content": system}]
    for ex in persona.examples:
        messages.append({"role": "user", "content": ex.user})
        messages.append({"role": "assistant", "content": ex.reply})
    # Newest turns first until the budget is spent, then back into chronological order.
    kept: list[dict[str, str]] = []
    used = 0
    for turn in reversed(history):
        if turn.persona_id == persona.id:
            msg = {"role": "assistant", "content": turn.text}
        else:
            msg = {"role": "user", "content": f"{turn.speaker}: {turn.text}"}
        if kept and used + len(msg["content"]) > budget_chars:
            break
        used += len(msg["content"])
        kept.append(msg)
    kept.reverse()
    messages.extend(kept)
    if messages[-1]["role"] != "user":
        # Chat templates expect the model to answer a user turn.
        messages.append({"role": "user", "content": "(Continue the conversation in your own voice.)"})
    return messages


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
        self.cut_streams = CutStreams(getattr(client, "endpoint", client.name))

    def request(self, persona: Persona, history: Sequence[Turn], reply: Reply) -> LLMRequest:
        messages = build_messages(
            persona,
            history,
            instruction=reply.instruction,
            budget_chars=self.config.history_chars,
        )
        return LLMRequest(
            messages=tuple(messages),
            model=persona.model.name or self.config.model,
            temperature=persona.model.temperature if persona.model.temperature is not None else self.config.temperature,
            max_tokens=persona.model.max_tokens or self.config.max_tokens,
            user=f"{reply.platform}:{reply.to_user}" if reply.to_user else None,
        )

    async def write(self, persona: Persona, request: LLMRequest) -> AsyncIterator[str]:
        """Yields text as it arrives; raises IncompleteReply or LLMError.

        The reply is resolved within llm.timeout_seconds of this call, waiting for a slot and every
        retry included (time the consumer spends on a chunk does not count): one that gets no slot
        in time fails as "busy", one whose endpoint is too slow as "timeout"."""
        permit = self.breaker.allow()
        if permit is None:
            raise LLMError("circuit_open", "the LLM endpoint failed repeatedly; resting")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.timeout_seconds
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
            raise LLMError("busy", f"no free LLM slot within {self.config.timeout_seconds:g}s") from None

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
            prompt = sum(len(m["content"]) for m in request.messages) // 4 + 1
            self.on_usage(Usage(persona.id, prompt, len(text) // 4 + 1, True, request.user))

    async def close(self) -> None:
        await self.client.close()


def valid_request(request: LLMRequest) -> LLMRequest:
    """The request with valid Unicode only: history stored before text was cleaned at the door (or
    by an older version) must not fail every later request that includes it."""
    messages = tuple({**m, "content": valid_unicode(m["content"])} for m in request.messages)
    return request if messages == request.messages else replace(request, messages=messages)


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
