"""Any OpenAI-compatible endpoint through the `openai` SDK, with our own bounded retries (the SDK's
retries are off: it retries `insufficient_quota` 429s, which waiting never fixes)."""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import Any

from bots.core.ports import Chunk, LLMError, LLMRequest
from bots.llm.breaker import RetryBudget
from bots.llm.watch import endpoint_host

log = logging.getLogger("botfleet.llm")

# An error code the endpoint gave with a 4xx goes into the kind (http_400:content_filter), so the
# dropped reply says why; only plain short codes, so a label never carries free text.
_CODE = re.compile(r"[a-z_]{1,40}")


def _retry_after(exc: Any) -> float | None:
    response = getattr(exc, "response", None)
    if response is None:
        return None
    value = response.headers.get("retry-after-ms")
    if value:
        try:
            return float(value) / 1000
        except ValueError:
            pass
    value = response.headers.get("retry-after")
    try:
        return float(value) if value else None
    except ValueError:
        return None


class OpenAIClient:
    name = "openai"

    def __init__(
        self,
        *,
        api_key: str | None,
        base_url: str | None,
        timeout: float,
        max_retries: int = 2,
        backoff: float = 0.5,
        rng: random.Random | None = None,
        streaming: bool = True,
        retry_budget: RetryBudget | None = None,
    ) -> None:
        import openai

        self._openai = openai
        # A local endpoint (Ollama, llama.cpp server) needs no key, but the SDK insists on one.
        self._client = openai.AsyncOpenAI(
            api_key=api_key or "not-needed", base_url=base_url, timeout=timeout, max_retries=0
        )
        self.timeout = timeout
        # For logs: where replies come from, host only (a URL could carry a key in its query).
        self.endpoint = endpoint_host(base_url)
        self.max_retries = max_retries
        self.backoff = backoff
        self.streaming = streaming
        self.retry_budget = retry_budget
        self._rng = rng or random.Random()

    def _retryable(self, exc: Exception) -> float | None:
        """Seconds to wait before retrying exc, or None when retrying cannot help."""
        o = self._openai
        if isinstance(exc, o.RateLimitError):
            if "insufficient_quota" in (getattr(exc, "code", None), getattr(exc, "type", None)):
                return None
            return _retry_after(exc) or -1
        if isinstance(exc, o.APIStatusError) and exc.status_code >= 500:
            return _retry_after(exc) or -1
        if isinstance(exc, o.APIConnectionError) and not isinstance(exc, o.APITimeoutError):
            return -1
        return None

    def _kind(self, exc: Exception) -> str:
        o = self._openai
        if isinstance(exc, o.APITimeoutError | asyncio.TimeoutError | TimeoutError):
            return "timeout"
        if isinstance(exc, o.RateLimitError):
            return "insufficient_quota" if self._retryable(exc) is None else "rate_limited"
        if isinstance(exc, o.APIStatusError):
            code = getattr(exc, "code", None)
            if 400 <= exc.status_code < 500 and isinstance(code, str) and _CODE.fullmatch(code):
                return f"http_{exc.status_code}:{code}"
            return f"http_{exc.status_code}"
        if isinstance(exc, o.APIConnectionError):
            return "connection"
        return type(exc).__name__

    async def stream(self, request: LLMRequest) -> AsyncIterator[Chunk]:
        """One reply. `timeout` bounds the whole call, retries and their pauses included; it runs only
        while waiting for the endpoint, never while the consumer (an adapter editing a message) holds
        a chunk."""
        attempt = 0
        budget = [self.timeout]
        if self.retry_budget is not None:
            self.retry_budget.on_call()
        while True:
            started = False
            try:
                async for chunk in self._attempt(request, budget):
                    started = started or bool(chunk.text or chunk.finish_reason)
                    yield chunk
                return
            except Exception as exc:
                # Once words have gone out, a retry would repeat them: only retry a clean failure.
                wait = None if started else self._pause(exc, attempt, budget[0])
                if wait is None:
                    raise LLMError(self._kind(exc), _safe(str(exc))) from None
                attempt += 1
                log.info("llm %s, retry %d in %.2fs", self._kind(exc), attempt, wait)
                loop = asyncio.get_running_loop()
                paused = loop.time()
                await asyncio.sleep(wait)
                budget[0] -= loop.time() - paused

    def _pause(self, exc: Exception, attempt: int, left: float) -> float | None:
        """Seconds to wait before retrying after exc, or None to fail now."""
        wait = self._retryable(exc)
        if wait is not None and wait < 0:
            wait = self.backoff * (2**attempt) * (0.5 + self._rng.random())
        # A retry that could not finish in time only delays the verdict: fail now, with the cause.
        if wait is None or wait >= left or attempt >= self.max_retries or not self._may_retry():
            return None
        return wait

    async def _attempt(self, request: LLMRequest, budget: list[float]) -> AsyncIterator[Chunk]:
        """One call, spending the reply's timeout budget only while it waits for the endpoint."""

        async def waited(awaitable: Any) -> Any:
            loop = asyncio.get_running_loop()
            started = loop.time()
            try:
                async with asyncio.timeout(max(budget[0], 0.0)):
                    return await awaitable
            finally:
                budget[0] -= loop.time() - started

        common: dict[str, Any] = {
            "model": request.model,
            "messages": list(request.messages),
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
        }
        if not self.streaming:
            done = await waited(self._client.chat.completions.create(**common))
            choice = done.choices[0] if done.choices else None
            yield Chunk(
                text=(choice.message.content or "") if choice else "",
                finish_reason=choice.finish_reason if choice else None,
            )
            if done.usage is not None:
                yield Chunk(prompt_tokens=done.usage.prompt_tokens, completion_tokens=done.usage.completion_tokens)
            return
        stream = await waited(
            self._client.chat.completions.create(**common, stream=True, stream_options={"include_usage": True})
        )
        try:
            async with aclosing(self._events(stream, waited)) as chunks:
                async for chunk in chunks:
                    yield chunk
        finally:
            # Closed on every exit, a timeout or the consumer stopping included: no leaked connection.
            await stream.close()

    @staticmethod
    async def _events(stream: Any, waited: Callable[[Any], Awaitable[Any]]) -> AsyncGenerator[Chunk, None]:
        events = stream.__aiter__()
        while True:
            try:
                event = await waited(events.__anext__())
            except StopAsyncIteration:
                return
            for choice in event.choices or ():
                text = (choice.delta.content or "") if choice.delta else ""
                if text or choice.finish_reason:
                    yield Chunk(text=text, finish_reason=choice.finish_reason)
            usage = getattr(event, "usage", None)
            if usage is not None:
                yield Chunk(prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens)

    def _may_retry(self) -> bool:
        if self.retry_budget is None or self.retry_budget.try_retry():
            return True
        log.info("llm retry budget spent: failing this call without retrying")
        return False

    async def close(self) -> None:
        await self._client.close()


def _safe(detail: str) -> str:
    # Error bodies can echo request headers in proxies; never let a key-looking token through.
    return re.sub(r"(sk-|Bearer\s+)[A-Za-z0-9_\-]{6,}", r"\1***", detail)[:300]
