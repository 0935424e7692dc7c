"""Prompt assembly and reply writing: persona + examples + recent history -> LLM -> text chunks."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from bots.config import LLMConfig
from bots.core.events import Reply
from bots.core.ports import Chunk, LLMClient, LLMError, LLMRequest, Turn
from bots.llm.breaker import Breaker
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
