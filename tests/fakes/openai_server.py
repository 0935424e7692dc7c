"""A fake OpenAI-compatible chat completions server for tests.

Runs on aiohttp so tests can point the real ``openai`` SDK at it and exercise
retries, timeouts and streaming without a network or an API key::

    async with FakeOpenAI() as fake:
        fake.script(Status.rate_limited(), Reply("hi"))
        client = AsyncOpenAI(base_url=fake.base_url, api_key="test-key")

Standalone: ``python -m tests.fakes.openai_server --port 8099``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

from aiohttp import web

from tests.fakes.openai_parts import BadContent, check_content, image_urls

DEFAULT_MODEL = "fake-gpt"
STREAM_PIECES = 3


def estimate_tokens(text: str) -> int:
    """Deterministic stand-in for a tokenizer so tests can assert exact usage."""
    return len(text) // 4 + 1


def error_body(message: str, type_: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


@dataclass(frozen=True)
class Status:
    """Answer with an HTTP error status; ``body`` defaults to an OpenAI-style error."""

    code: int
    body: dict[str, Any] | None = None
    headers: dict[str, str] | None = None
    # Seconds before the answer: a gateway that gives up slowly (a 504 after a long wait).
    delay: float = 0.0

    @classmethod
    def rate_limited(cls, retry_after: float = 0.1) -> Status:
        return cls(
            429,
            error_body("Rate limit reached (fake).", "requests", "rate_limit_exceeded"),
            {"retry-after": str(retry_after)},
        )

    @classmethod
    def insufficient_quota(cls) -> Status:
        # The real API sends no retry-after here: the quota will not come back by waiting.
        return cls(
            429,
            error_body(
                "You exceeded your current quota, please check your plan and billing details.",
                "insufficient_quota",
                "insufficient_quota",
            ),
        )

    @classmethod
    def server_error(cls, code: int = 500, delay: float = 0.0) -> Status:
        return cls(
            code, error_body("The server had an error while processing your request.", "server_error"), delay=delay
        )

    @classmethod
    def content_filter(cls) -> Status:
        # What Azure OpenAI answers when its filter flags the prompt; the endpoint itself is fine.
        return cls(
            400,
            error_body(
                "The response was filtered due to the prompt triggering the content management policy.",
                "invalid_request_error",
                "content_filter",
            ),
        )


@dataclass(frozen=True)
class Delay:
    """Sleep before answering normally, long enough to trip a client timeout."""

    seconds: float


@dataclass(frozen=True)
class Truncated:
    """Cut the answer short.

    Streaming: a few content chunks, then the body ends cleanly with no
    ``finish_reason`` and no ``[DONE]`` (what a dying proxy or worker looks like).
    With ``abort=True`` the TCP connection is reset instead, so the client sees a
    transport error. Non-streaming requests always get half a JSON body and a reset.
    """

    abort: bool = False


@dataclass(frozen=True)
class Reply:
    """A one-off reply text, for streaming and non-streaming alike."""

    text: str


Behaviour = Status | Delay | Truncated | Reply


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        # Multi-part messages: only text parts carry anything we can echo or count.
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def default_reply(body: dict[str, Any]) -> str:
    user = [m for m in body.get("messages", []) if isinstance(m, dict) and m.get("role") == "user"]
    last = _text_of(user[-1].get("content")) if user else ""
    return f"echo: {last[:200]}"


def _split(text: str, parts: int = STREAM_PIECES) -> list[str]:
    if not text:
        return [""]
    size = -(-len(text) // parts)
    return [text[i : i + size] for i in range(0, len(text), size)]


@dataclass
class _Call:
    """Everything one completion needs, so streaming and JSON share the ids and usage."""

    body: dict[str, Any]
    text: str
    id: str
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def model(self) -> str:
        return str(self.body.get("model") or DEFAULT_MODEL)

    def usage(self) -> dict[str, int]:
        prompt = sum(estimate_tokens(_text_of(m.get("content"))) for m in self.body.get("messages", []))
        completion = estimate_tokens(self.text)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def completion(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": self.text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": self.usage(),
        }

    def chunk(self, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            **extra,
        }

    def content_chunks(self) -> list[dict[str, Any]]:
        opts = self.body.get("stream_options") or {}
        # The real API puts "usage": null on every chunk once usage is requested.
        extra: dict[str, Any] = {"usage": None} if opts.get("include_usage") else {}
        pieces = _split(self.text)
        chunks = []
        for i, piece in enumerate(pieces):
            delta: dict[str, Any] = {"content": piece}
            if i == 0:
                delta = {"role": "assistant", **delta}
            finish = "stop" if i == len(pieces) - 1 else None
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            chunks.append(self.chunk([choice], **extra))
        return chunks


# What the fake moderation endpoint flags by default: a few phrases per OpenAI category name.
MODERATION_WORDS: dict[str, tuple[str, ...]] = {
    "self-harm/intent": ("kill myself", "end my life", "want to die"),
    "violence": ("i will hurt you",),
    "harassment": ("you are worthless",),
}
MODERATION_CATEGORIES = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)


def default_moderation(text: str) -> set[str]:
    """OpenAI category names the fake flags in text."""
    low = text.lower()
    flagged = {name for name, words in MODERATION_WORDS.items() if any(w in low for w in words)}
    return flagged | {name.split("/")[0] for name in flagged}


def _sse(data: dict[str, Any] | str) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data)
    return f"data: {payload}\n\n".encode()


class FakeOpenAI:
    def __init__(
        self,
        reply: Callable[[dict[str, Any]], str] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        models: tuple[str, ...] = (DEFAULT_MODEL,),
        fallback: Behaviour | None = None,
        interrupts: bool = False,
        chunk_seconds: float = 0.0,
        vision: bool = True,
        moderate: Callable[[str], set[str]] = default_moderation,
    ) -> None:
        self.reply = reply or default_reply
        # /v1/moderations: the OpenAI category names flagged in a text, and every input it was asked.
        self.moderate = moderate
        self.moderated: list[str] = []
        self.host = host
        self.port = port
        self.models = models
        self.requests: list[dict[str, Any]] = []
        # Whether the model sees images (False: image parts are refused, as a text-only model does).
        self.vision = vision
        # Every image URL the endpoint was sent, in order.
        self.images: list[str] = []
        self._script: deque[Behaviour] = deque()
        # What every request gets once the script is used up (a 500 storm, a hung endpoint); None: a reply.
        self.fallback = fallback
        # Like llama.cpp's server by default: a new request interrupts the streams already running,
        # which then end without a finish reason. chunk_seconds paces streams so they overlap.
        self.interrupts = interrupts
        self.chunk_seconds = chunk_seconds
        self.interrupted = 0
        self._running: set[asyncio.Event] = set()
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def script(self, *behaviours: Behaviour) -> None:
        self._script.extend(behaviours)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/moderations", self._moderations)
        # handler_cancellation: a client that gives up on a Delay must not leave the
        # handler sleeping, or stop() would wait for it.
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:
            self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _models(self, request: web.Request) -> web.Response:
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "botfleet-fake"} for m in self.models]
        return web.json_response({"object": "list", "data": data})

    async def _moderations(self, request: web.Request) -> web.Response:
        body = await request.json()
        inputs = body.get("input")
        texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
        results = []
        for text in texts:
            self.moderated.append(text)
            flagged = self.moderate(text)
            results.append(
                {
                    "flagged": bool(flagged),
                    "categories": {name: name in flagged for name in MODERATION_CATEGORIES},
                    "category_scores": {name: 0.99 if name in flagged else 0.001 for name in MODERATION_CATEGORIES},
                    "category_applied_input_types": {name: ["text"] for name in MODERATION_CATEGORIES},
                }
            )
        model = body.get("model", "omni-moderation-latest")
        return web.json_response({"id": f"modr-fake-{next(self._ids)}", "model": model, "results": results})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:  # bad JSON or bad UTF-8
            body = None
        if not isinstance(body, dict):
            bad = error_body("Body must be a JSON object.", "invalid_request_error")
            return web.json_response(bad, status=400)
        self.requests.append(body)
        try:
            check_content(body, vision=self.vision)
        except BadContent as exc:
            bad = error_body(str(exc), "invalid_request_error")
            bad["error"]["param"] = exc.param
            return web.json_response(bad, status=400)
        self.images += image_urls(body)
        return await self._answer(request, body)

    async def _answer(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        behaviour = self._script.popleft() if self._script else self.fallback
        self._interrupt()
        if isinstance(behaviour, Status):
            await asyncio.sleep(behaviour.delay)
            payload = error_body(f"HTTP {behaviour.code}", "fake_error") if behaviour.body is None else behaviour.body
            return web.json_response(payload, status=behaviour.code, headers=behaviour.headers)
        if isinstance(behaviour, Delay):
            await asyncio.sleep(behaviour.seconds)

        text = behaviour.text if isinstance(behaviour, Reply) else self.reply(body)
        call = _Call(body, text, f"chatcmpl-fake-{next(self._ids)}")
        truncated = behaviour if isinstance(behaviour, Truncated) else None
        if body.get("stream"):
            return await self._stream(request, call, truncated)
        if truncated is not None:
            return await self._cut_json(request, call)
        return web.json_response(call.completion())

    def _interrupt(self) -> None:
        if self.interrupts:
            for running in self._running:
                running.set()

    async def _stream(self, request: web.Request, call: _Call, cut: Truncated | None) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        chunks = call.content_chunks()
        if cut is not None:
            # Keep at least one chunk so the client has partial text to (mis)handle.
            for chunk in chunks[: max(1, len(chunks) - 1)]:
                chunk["choices"][0]["finish_reason"] = None
                await resp.write(_sse(chunk))
            if cut.abort:
                self._reset(request)
                return resp
            await resp.write_eof()
            return resp
        interrupt = asyncio.Event()
        self._running.add(interrupt)
        try:
            for chunk in chunks:
                if interrupt.is_set():
                    # llama.cpp ends an interrupted stream cleanly, only without a finish reason.
                    self.interrupted += 1
                    await resp.write(_sse("[DONE]"))
                    await resp.write_eof()
                    return resp
                await resp.write(_sse(chunk))
                await asyncio.sleep(self.chunk_seconds)
        finally:
            self._running.discard(interrupt)
        if (call.body.get("stream_options") or {}).get("include_usage"):
            await resp.write(_sse(call.chunk([], usage=call.usage())))
        await resp.write(_sse("[DONE]"))
        await resp.write_eof()
        return resp

    async def _cut_json(self, request: web.Request, call: _Call) -> web.StreamResponse:
        raw = json.dumps(call.completion()).encode()
        # Promise the full length and deliver half, so the client cannot mistake it for success.
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.content_length = len(raw)
        await resp.prepare(request)
        await resp.write(raw[: len(raw) // 2])
        self._reset(request)
        return resp

    @staticmethod
    def _reset(request: web.Request) -> None:
        if request.transport is not None:
            request.transport.abort()


async def _serve(host: str, port: int) -> None:
    fake = FakeOpenAI(host=host, port=port)
    await fake.start()
    print(f"fake OpenAI listening on {fake.base_url}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await fake.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a fake OpenAI chat completions API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    args = parser.parse_args(argv)
    try:
        asyncio.run(_serve(args.host, args.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
