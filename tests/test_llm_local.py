"""The local client's own logic without the model: sampling and stop strings handed to llama.cpp,
replies cut at max_tokens ending on a full sentence, and a given-up reply freeing the model.
tests/test_local_model.py runs the real model."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bots.config import LLMConfig
from bots.core.brain import Brain, Usage
from bots.core.ports import LLMError, LLMRequest, Turn
from bots.core.prompts import build_messages
from bots.llm.local import SAMPLING, LocalClient, Sentences, speakers, stop_strings
from tests.conftest import persona

REQ = LLMRequest(
    messages=(
        {"role": "system", "content": "You are The Skeptic."},
        {"role": "user", "content": "alice: is this a scam?"},
        {"role": "assistant", "content": "Who benefits?"},
        {"role": "user", "content": "The Nerd: statistically, yes."},
    ),
    model="local",
    temperature=0.7,
    max_tokens=40,
)


class FakeLlama:
    """Stands in for xllamacpp.Server (a third-party object): streams the pieces it is given to the
    callback, the way llama.cpp's server code does, and stops when the callback returns True."""

    def __init__(
        self, pieces: list[str], finish: str, *, gate: threading.Event | None = None, free: int = 0, wait: float = 5
    ) -> None:
        self.pieces = pieces
        self.finish = finish
        # With a gate, pieces after the first `free` ones wait for it: the test decides when they come.
        self.gate = gate
        self.free = free
        self.wait = wait
        self.calls: list[dict[str, Any]] = []
        self.produced = 0

    def handle_chat_completions(self, payload: dict[str, Any], callback: Callable[[Any], bool]) -> None:
        self.calls.append(payload)
        for n, piece in enumerate(self.pieces):
            if self.gate is not None and n >= self.free:
                self.gate.wait(self.wait)
            self.produced += 1
            if callback({"choices": [{"delta": {"content": piece}, "finish_reason": None}]}):
                return
        if callback({"choices": [{"delta": {}, "finish_reason": self.finish}]}):
            return
        callback({"choices": [], "usage": {"prompt_tokens": 17, "completion_tokens": len(self.pieces)}})


class FailingServer:
    def handle_chat_completions(self, payload: dict[str, Any], callback: Callable[[Any], bool]) -> None:
        callback({"error": {"code": 400, "message": "the request exceeds the context size"}})


def client(llama: FakeLlama | FailingServer) -> LocalClient:
    c = LocalClient(model_path=Path("model.gguf"))
    c._llm = llama
    return c


async def reply(c: LocalClient, request: LLMRequest = REQ) -> str:
    return "".join([t async for t in Brain(c, LLMConfig()).write(persona("skeptic"), request)])


async def test_sampling_like_the_llama_cpp_server_and_where_the_reply_stops() -> None:
    llama = FakeLlama(["Who ", "benefits?"], "stop")
    assert await reply(client(llama)) == "Who benefits?"
    call = llama.calls[0]
    assert call["stream"] is True and call["messages"] == list(REQ.messages)
    # No repeat penalty: penalising full stops and common words made sentences run on to max_tokens.
    assert call["repeat_penalty"] == 1.0 and call["top_k"] == SAMPLING["top_k"] and call["min_p"] == 0.05
    assert call["stop"] == ["\n\n", "\n> ", "\nalice:", "\nThe Nerd:"]
    assert call["max_tokens"] == 40 and call["temperature"] == 0.7


async def test_a_reply_cut_at_max_tokens_ends_on_its_last_full_sentence() -> None:
    llama = FakeLlama(["Who benefits? ", "Ask for the ", "numbers. Then we", " can tal"], "length")
    assert await reply(client(llama)) == "Who benefits? Ask for the numbers."


async def test_a_reply_that_stopped_on_its_own_is_kept_whole() -> None:
    llama = FakeLlama(["Who benefits? Ask", " them, maybe"], "stop")
    assert await reply(client(llama)) == "Who benefits? Ask them, maybe"


async def test_a_cut_reply_without_any_sentence_end_keeps_its_words() -> None:
    llama = FakeLlama(["well I think that ", "the whole thi"], "length")
    assert await reply(client(llama)) == "well I think that the whole…"


def test_sentences_hold_back_only_the_unfinished_one() -> None:
    s = Sentences()
    assert s.feed("Hi there. How") == "Hi there."
    assert s.feed(" are you?") == ""  # a sentence end needs what follows it
    assert s.feed(" Fine") == " How are you?"
    assert s.finish(cut=True) == ""
    assert s.feed('"Really?" she') == '"Really?"'
    assert s.finish(cut=False) == " she"
    s.feed("It ends here.")
    assert s.finish(cut=True) == "It ends here."


async def test_a_reply_that_opens_as_another_speaker_loses_the_label() -> None:
    llama = FakeLlama(["The Nerd: statistically ", "it is. Really."], "stop")
    assert await reply(client(llama)) == "statistically it is. Really."
    made_up = FakeLlama(["The Liar: The Liar: ", "trust me. Quick maths: 2."], "stop")
    assert await reply(client(made_up)) == "trust me. Quick maths: 2."


async def test_a_reply_ends_after_four_sentences_and_the_model_stops_writing() -> None:
    # The sixth piece comes only after a pause, by when the client has seen the fourth sentence end.
    llama = FakeLlama(
        ["One. ", "Two! ", "Three? ", "Four. ", "Five. "] + ["more "] * 50,
        "length",
        gate=threading.Event(),
        free=5,
        wait=0.3,
    )
    c = client(llama)
    assert await reply(c) == "One. Two! Three? Four."
    await model_free(c)
    assert llama.produced <= 6  # the worker stopped instead of writing on to max_tokens


def test_a_blank_line_or_another_speakers_turn_ends_the_reply() -> None:
    assert stop_strings(REQ.messages) == ["\n\n", "\n> ", "\nalice:", "\nThe Nerd:"]
    assert stop_strings([{"role": "user", "content": "no speaker here"}]) == ["\n\n", "\n> "]


def test_speakers_come_from_the_quoted_history_the_fleet_sends() -> None:
    history = [
        Turn(speaker="alice", text="is this a scam?", at=1.0, user_id="u1"),
        Turn(speaker="The Nerd", text="statistically, yes.", at=2.0, persona_id="nerd"),
        Turn(speaker="bob", text="what do you think?\nBe honest.", at=3.0, user_id="u2"),
    ]
    messages = build_messages(persona("skeptic"), history)
    # The headers ("Answer this message:") are not speakers; every quoted name is.
    assert speakers(messages) == ["alice", "The Nerd", "bob"]


async def test_a_reply_that_opens_with_a_quoted_label_loses_it() -> None:
    llama = FakeLlama(["> The Nerd: who ", "benefits? Ask."], "stop")
    assert await reply(client(llama)) == "who benefits? Ask."


async def test_exact_usage_comes_from_the_server() -> None:
    seen: list[Usage] = []
    c = client(FakeLlama(["Who ", "benefits?"], "stop"))
    text = "".join([t async for t in Brain(c, LLMConfig(), on_usage=seen.append).write(persona("skeptic"), REQ)])
    assert text == "Who benefits?"
    assert seen[0].prompt_tokens == 17 and seen[0].completion_tokens == 2 and not seen[0].estimated


async def test_an_error_from_the_model_is_an_llm_error() -> None:
    with pytest.raises(LLMError) as err:
        await reply(client(FailingServer()))
    assert "context size" in str(err.value)


async def test_a_reply_given_up_frees_the_model_for_the_next_one() -> None:
    gate = threading.Event()
    llama = FakeLlama(["word "] * 200, "length", gate=gate)
    c = client(llama)
    brain = Brain(c, LLMConfig(local_timeout_seconds=0.3))

    async def write() -> None:
        async for _ in brain.write(persona("a"), REQ):
            pass

    with pytest.raises(LLMError) as err:
        await asyncio.wait_for(write(), 5)
    assert err.value.kind == "timeout"
    gate.set()
    await model_free(c)
    # The worker saw the reply was given up and stopped instead of writing 200 words for nobody.
    assert llama.produced == 1


async def model_free(c: LocalClient) -> None:
    for _ in range(250):
        if c._lock.acquire(blocking=False):
            c._lock.release()
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the worker still holds the model")
