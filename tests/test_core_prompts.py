"""What reaches the model: every turn within history_chars, the answered message last, other
speakers quoted rather than given "Name: text" turns; and speaker labels stripped from replies."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from bots.config import FleetConfig
from bots.core.brain import Brain
from bots.core.events import Author, Reply
from bots.core.ports import Chunk, LLMRequest, Turn
from bots.core.prompts import ANSWER, build_messages
from bots.llm.canned import CannedClient
from tests.conftest import make_fleet, msg, persona


class Recording:
    """An LLM client that keeps every request and answers with a fixed text."""

    name = "recording"

    def __init__(self, text: str = "ok") -> None:
        self.text = text
        self.requests: list[LLMRequest] = []

    async def stream(self, request: LLMRequest) -> AsyncIterator[Chunk]:
        self.requests.append(request)
        yield Chunk(text=self.text, finish_reason="stop")

    async def close(self) -> None:
        return None


def turn(speaker: str, text: str, mid: str, persona_id: str | None = None) -> Turn:
    return Turn(speaker=speaker, text=text, at=0.0, persona_id=persona_id, message_id=mid)


def history_chars(messages: list[dict[str, str]]) -> int:
    return sum(len(m["content"]) for m in messages[1:])


def test_a_huge_newest_turn_is_capped_to_history_chars() -> None:
    cfg = FleetConfig.model_validate({"llm": {"history_chars": 1000}})
    brain = Brain(CannedClient("ok"), cfg.llm)
    history = [turn("bob", "earlier words " * 20, "m1"), turn("alice", "x" * 100_000, "m2")]
    reply = Reply("a", "test", "general", reply_to="m2", reason="mention")
    request = brain.request(persona("a"), history, reply)
    # The turns' text stays within the budget; the rest is a few short framing lines.
    assert history_chars(list(request.messages)) <= 1000 + 200
    assert "xxx" in request.messages[-1]["content"] and request.messages[-1]["content"].endswith("…")


async def test_a_huge_message_reaches_the_model_capped_end_to_end() -> None:
    llm = Recording()
    fleet, adapter, _ = make_fleet([persona("a", triggers=[{"keywords": ["help"]}])], llm=llm)
    fleet.config = fleet.config.model_copy(update={"llm": fleet.config.llm.model_copy(update={"history_chars": 500})})
    fleet.brain.config = fleet.config.llm
    await fleet.dispatch(msg("help " + "y" * 50_000))
    await fleet.drain()
    assert adapter.replies and history_chars(list(llm.requests[0].messages)) <= 500 + 200


async def test_a_reply_answers_the_message_it_was_planned_for_not_a_later_one() -> None:
    llm = Recording()
    fleet, adapter, _ = make_fleet([persona("skeptic", triggers=[{"mention": True}])], llm=llm)
    plan = await fleet.handle(msg("hey @skeptic should I quit my job?", mentions=frozenset({"skeptic"})))
    # Another message arrives before the reply is written.
    assert not (await fleet.handle(msg("thinking about opening a bakery"))).actions
    fleet.execute(plan)
    await fleet.drain()
    assert len(adapter.replies) == 1
    last = llm.requests[0].messages[-1]
    assert last["role"] == "user"
    assert last["content"].endswith("should I quit my job?")
    answer_at = last["content"].index(ANSWER)
    assert "bakery" not in last["content"][answer_at:]
    # The later message is kept, as context before the one to answer.
    prompt = "\n".join(m["content"] for m in llm.requests[0].messages)
    assert prompt.index("bakery") < prompt.index("should I quit my job?", prompt.index(ANSWER))


def test_the_answered_turn_comes_last_even_when_it_is_not_the_newest() -> None:
    history = [turn("alice", "first", "m1"), turn("bob", "second", "m2"), turn("carol", "third", "m3")]
    messages = build_messages(persona("a"), history, answering="m2")
    assert messages[-1]["content"].endswith("bob: second")
    assert messages[-1]["content"].index("carol: third") < messages[-1]["content"].index(ANSWER)
    assert "alice: first" in messages[-2]["content"]


def test_other_speakers_are_quoted_not_given_name_prefixed_turns() -> None:
    history = [
        turn("alice", "what should I do?", "m1"),
        turn("The Optimist", "Go for it!", "m2", persona_id="optimist"),
        turn("The Stoic", "Accept what you cannot change.", "m3", persona_id="stoic"),
        turn("Ann", "I said this before.", "m4", persona_id="a"),
        turn("bob", "and me?", "m5"),
    ]
    messages = build_messages(persona("a", name="Ann"), history, answering="m5")
    user_turns = [m["content"] for m in messages[1:] if m["role"] == "user"]
    label = re.compile(r"^[^\n:>]{1,40}: ")
    assert not any(label.match(c) for c in user_turns), user_turns
    assert any("> The Optimist: Go for it!" in c for c in user_turns)
    assert {"role": "assistant", "content": "I said this before."} in messages


async def test_speaker_labels_are_stripped_from_replies_repeatedly() -> None:
    ps = [
        persona("stoic", name="The Stoic", triggers=[{"keywords": ["calm"]}]),
        persona("optimist", name="The Optimist", triggers=[]),
        persona("skeptic", name="The Skeptic", triggers=[]),
    ]
    llm = Recording("The Optimist: The Stoic: [The Skeptic] Breathe. Note: it passes.")
    fleet, adapter, _ = make_fleet(ps, llm=llm)
    await fleet.dispatch(msg("how do I stay calm?", author=Author(id="u5", name="dan")))
    await fleet.drain()
    # Only the first paragraph is the model's: the AI disclosure footer follows it.
    assert [text.split("\n\n")[0] for _, text in adapter.replies] == ["Breathe. Note: it passes."]
