"""Care and safety end to end: the fleet with a recording adapter and a scripted model, and with the
real openai client against the fake OpenAI server (chat and moderation)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bots.cli import main
from bots.config import FleetConfig
from bots.core.events import Author, Command, Message
from bots.core.ports import Chunk, LLMRequest
from bots.llm.moderation import OpenAIModerator
from bots.llm.openai import OpenAIClient
from bots.ops.metrics import Metrics
from bots.simulate import simulate
from tests.conftest import HUMAN, make_fleet, msg, persona
from tests.fakes.openai_server import FakeOpenAI

SKEPTIC = persona("skeptic", name="The Skeptic", triggers=[{"mention": True}, {"keywords": ["coffee"]}])
ACME = persona("acme", name="Acme Guide", sponsor="Acme Outdoor Gear", triggers=[{"mention": True}])
NO_FOOTER = {"about": {"disclosure": ""}}


class Scripted:
    """A model that writes the given text in small pieces, as a stream does."""

    name = "scripted"

    def __init__(self, text: str, piece: int = 6) -> None:
        self.text = text
        self.piece = piece
        self.requests: list[LLMRequest] = []

    async def stream(self, request: LLMRequest) -> AsyncIterator[Chunk]:
        self.requests.append(request)
        for i in range(0, len(self.text), self.piece):
            yield Chunk(text=self.text[i : i + self.piece])
        yield Chunk(finish_reason="stop")

    async def close(self) -> None:
        return None


def mention(text: str, pid: str = "skeptic", **kw: Any) -> Message:
    return msg(f"@{pid} {text}", mentions=frozenset({pid}), **kw)


async def run(fleet: Any, event: Message | Command) -> Any:
    plan = await fleet.handle(event)
    fleet.execute(plan)
    await fleet.drain()
    return plan


async def test_a_crisis_message_gets_the_care_message_and_no_persona_reply() -> None:
    fleet, adapter, _ = make_fleet([SKEPTIC], config=NO_FOOTER)
    metrics = Metrics(fleet)
    plan = await run(fleet, mention("honestly I want to kill myself"))
    assert adapter.replies == [] and adapter.reactions == []
    [notice] = adapter.notices
    assert notice.private and notice.to_user == HUMAN.id
    assert "988" in notice.text and "findahelpline.com" in notice.text
    assert [(d.persona_id, d.reason) for d in plan.decisions] == [("skeptic", "safety:care")]
    # Neither the audit nor the history nor the metrics keep what they wrote.
    assert fleet.audit[plan.event.key].event.text == ""
    assert await fleet.store.history("test:general", 10) == []
    rendered = metrics.render().decode()
    assert 'botfleet_safety_events_total{event="care"} 1.0' in rendered
    assert "kill myself" not in rendered


async def test_a_french_crisis_message_gets_the_french_care_message() -> None:
    fleet, adapter, _ = make_fleet([SKEPTIC], config=NO_FOOTER)
    await run(fleet, mention("je n'en peux plus, j'ai envie de mourir"))
    [notice] = adapter.notices
    assert "3114" in notice.text and adapter.replies == []


async def test_personas_stay_quiet_toward_that_person_unless_addressed_and_then_answer_with_care() -> None:
    llm = Scripted("I'm here with you. Please call 988 or someone you trust.")
    fleet, adapter, clock = make_fleet([SKEPTIC], llm=llm, config=NO_FOOTER)
    await run(fleet, msg("coffee... I don't want to live anymore"))
    quiet = await run(fleet, msg("coffee again"))
    assert [d.reason for d in quiet.decisions] == ["safety:care_quiet"] and adapter.replies == []
    await run(fleet, mention("are you there?"))
    # A caring reply that names the lifeline and echoes their words is posted, not withheld.
    llm.text = "You said you want to die; I'm glad you told me. The 988 Suicide & Crisis Lifeline is there."
    await run(fleet, mention("still there?"))
    assert len(adapter.replies) == 2
    llm.text = "I'm here with you. Please call 988 or someone you trust."
    assert "Care mode" in llm.requests[-1].messages[0]["content"]
    # Someone else in the channel is answered as usual.
    other = Author(id="u2", name="bob")
    await run(fleet, msg("coffee for me", author=other))
    assert len(adapter.replies) == 3 and "Care mode" not in llm.requests[-1].messages[0]["content"]
    clock.advance(31 * 60)
    await run(fleet, msg("coffee now"))
    assert len(adapter.replies) == 4 and "Care mode" not in llm.requests[-1].messages[0]["content"]


async def test_benign_look_alikes_are_answered() -> None:
    fleet, adapter, _ = make_fleet([SKEPTIC], config=NO_FOOTER)
    await run(fleet, mention("this bug is killing me, how do I kill the process?"))
    await run(fleet, mention("je meurs de rire"))
    assert len(adapter.replies) == 2 and adapter.notices == []


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("Well. You are worthless and everyone knows it.", "harassment"),
        ("Between us, I'm human, not a bot at all.", "human_claim"),
    ],
)
async def test_a_flagged_persona_reply_is_not_posted(text: str, category: str) -> None:
    fleet, adapter, _ = make_fleet([SKEPTIC], llm=Scripted(text), config=NO_FOOTER)
    outcomes: list[str] = []
    fleet.outcomes.append(lambda outcome, action: outcomes.append(outcome))
    plan = await run(fleet, mention("what do you think of me?"))
    assert adapter.replies == []
    # The adapter was told the reply stopped with nothing worth keeping, before the bad words.
    assert adapter.cut_off == [""]
    assert outcomes == [f"withheld:{category}"]
    assert ("skeptic", "skip", f"safety:flagged:{category}") in [
        (d.persona_id, d.action, d.reason) for d in fleet.audit[plan.event.key].decisions
    ]
    # The withheld words never join the conversation.
    assert [t.persona_id for t in await fleet.store.history("test:general", 10)] == [None]


async def test_a_word_cut_by_the_stream_does_not_stop_a_reply() -> None:
    # Streamed in pieces of 9: "I am real" is a snapshot on the way to "I am really glad".
    fleet, adapter, _ = make_fleet([SKEPTIC], llm=Scripted("I am really glad you asked.", piece=9), config=NO_FOOTER)
    await run(fleet, mention("hi"))
    assert [t for _, t in adapter.replies] == ["I am really glad you asked."]


async def test_a_long_reply_that_turns_abusive_late_is_still_withheld() -> None:
    text = "Let me think. " * 60 + "You are worthless."
    fleet, adapter, _ = make_fleet([SKEPTIC], llm=Scripted(text, piece=7), config=NO_FOOTER)
    await run(fleet, mention("and me?"))
    assert adapter.replies == [] and adapter.cut_off == [""]


async def test_a_withheld_reply_can_come_with_a_neutral_notice() -> None:
    config = {**NO_FOOTER, "safety": {"notice": "A reply was held back."}}
    fleet, adapter, _ = make_fleet([SKEPTIC], llm=Scripted("I will kill you."), config=config)
    await run(fleet, mention("hi"))
    assert adapter.replies == [] and [n.text for n in adapter.notices] == ["A reply was held back."]


async def test_a_sponsored_reply_that_pressures_is_blocked_and_the_same_words_from_others_are_not() -> None:
    text = "Our tents are great. Only today! Buy now before it's gone."
    fleet, adapter, _ = make_fleet([ACME, SKEPTIC], llm=Scripted(text), config=NO_FOOTER)
    await run(fleet, mention("which tent?", pid="acme"))
    assert adapter.replies == []
    await run(fleet, mention("which tent?"))
    assert [r.persona_id for r, _ in adapter.replies] == ["skeptic"]
    system = fleet.brain.request(ACME, [], adapter.replies[0][0]).messages[0]["content"]
    assert "never pressure" in system


async def test_about_names_every_sponsor() -> None:
    fleet, adapter, _ = make_fleet([ACME, SKEPTIC], config=NO_FOOTER)
    await run(fleet, Command("test", "c1", "general", HUMAN, "about"))
    [notice] = adapter.notices
    assert "Acme Guide (Acme Outdoor Gear)" in notice.text


async def test_one_nudge_a_day_past_the_threshold() -> None:
    config = {**NO_FOOTER, "safety": {"healthy_use": {"messages_per_day": 3}}}
    fleet, adapter, clock = make_fleet([SKEPTIC], config=config)
    for _ in range(6):
        await run(fleet, mention("and what about this?"))
        clock.advance(10)
    nudges = [n for n in adapter.notices if "talking" in n.text or "chatting" in n.text]
    assert len(nudges) == 1 and nudges[0].private and nudges[0].to_user == HUMAN.id
    assert len(adapter.replies) == 6
    clock.advance(86_400)
    for _ in range(5):
        await run(fleet, mention("another day"))
    assert len([n for n in adapter.notices if "chatting" in n.text]) == 2


async def test_time_spent_also_counts() -> None:
    config = {**NO_FOOTER, "safety": {"healthy_use": {"minutes_per_day": 2}}}
    fleet, adapter, clock = make_fleet([SKEPTIC], config=config)
    for _ in range(3):  # 100 seconds spent: under two minutes
        await run(fleet, mention("still here"))
        clock.advance(50)
    assert adapter.notices == []
    await run(fleet, mention("still here"))
    assert len(adapter.notices) == 1


async def test_replies_about_money_end_with_the_not_professional_advice_line() -> None:
    fleet, adapter, _ = make_fleet([SKEPTIC], llm=Scripted("Never put your savings in one startup."), config=NO_FOOTER)
    await run(fleet, mention("should I put my savings into my friend's startup?"))
    [(_, text)] = adapter.replies
    assert text.endswith(
        "(Not professional advice: for medical, legal or financial decisions, ask a qualified person.)"
    )


async def test_a_persona_presenting_as_a_doctor_gets_the_line_on_every_reply() -> None:
    doc = persona("doc", name="Dr. Mia", bio="A friendly family doctor", triggers=[{"mention": True}])
    fleet, adapter, _ = make_fleet([doc], llm=Scripted("Hello! Lovely weather."), config=NO_FOOTER)
    await run(fleet, mention("hi", pid="doc"))
    [(_, text)] = adapter.replies
    assert text.startswith("Hello! Lovely weather.") and "Not professional advice" in text


async def test_moderation_off_answers_everything() -> None:
    fleet, adapter, _ = make_fleet([SKEPTIC], config={**NO_FOOTER, "safety": {"moderation": "off"}})
    await run(fleet, mention("I want to kill myself"))
    assert len(adapter.replies) == 1 and adapter.notices == []


async def test_simulate_all_shows_safety_decisions() -> None:
    cfg = FleetConfig.model_validate({"fleet": {"reply_delay_seconds": [0, 0]}})
    lines = ['{"at": 0, "channel": "c", "author": "ann", "text": "@skeptic I want to end my life"}']
    out = await simulate(cfg, [SKEPTIC], lines, show_all=True)
    assert [(r["persona"], r["reason"]) for r in out] == [("skeptic", "safety:care")]


def write_setup(tmp_path: Path, config: str, personas: dict[str, str]) -> Path:
    (tmp_path / "personas").mkdir()
    for name, text in personas.items():
        (tmp_path / "personas" / f"{name}.yaml").write_text(text, encoding="utf-8")
    path = tmp_path / "config.yaml"
    path.write_text(config, encoding="utf-8")
    return path


SKEPTIC_YAML = "id: skeptic\nname: The Skeptic\nprompt: You doubt.\ntriggers:\n  - mention: true\n"
DOC_YAML = "id: doc\nname: Dr. Mia\nbio: A family doctor\nprompt: You help.\ntriggers:\n  - mention: true\n"


def test_check_warns_when_care_mode_is_off(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_setup(tmp_path, "safety:\n  care:\n    enabled: false\n", {"skeptic": SKEPTIC_YAML})
    assert main(["check", "--config", str(path)]) == 0
    err = capsys.readouterr().err
    assert "warning: safety.care.enabled is false" in err


def test_check_warns_about_a_persona_presenting_as_a_doctor(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_setup(tmp_path, "{}\n", {"skeptic": SKEPTIC_YAML, "doc": DOC_YAML})
    assert main(["check", "--config", str(path)]) == 0
    err = capsys.readouterr().err
    assert "warning: persona doc: its name or bio presents it as a professional" in err
    assert "persona skeptic" not in err and "care.enabled" not in err


def test_check_with_the_shipped_config_has_no_safety_warning(capsys: pytest.CaptureFixture[str]) -> None:
    root = Path(__file__).resolve().parent.parent
    assert main(["check", "--config", str(root / "config.yaml")]) == 0
    assert "warning" not in capsys.readouterr().err


def test_an_unknown_category_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="unknown categories selfharm"):
        FleetConfig.model_validate({"safety": {"actions": {"selfharm": "care"}}})


async def test_through_the_fake_openai_server_with_its_moderation_endpoint() -> None:
    async with FakeOpenAI(reply=lambda body: "Try the trail by the lake.") as fake:
        llm = OpenAIClient(api_key="k", base_url=fake.base_url, timeout=5)
        moderator = OpenAIModerator(api_key="k", base_url=fake.base_url)
        fleet, adapter, _ = make_fleet([SKEPTIC], llm=llm, moderator=moderator, config=NO_FOOTER)
        crisis = await run(fleet, mention("I want to end my life"))
        assert crisis.note == "safety:care" and adapter.replies == [] and len(adapter.notices) == 1
        await run(
            fleet, msg("@skeptic where should I walk?", mentions=frozenset({"skeptic"}), author=Author("u2", "bo"))
        )
        assert [t for _, t in adapter.replies] == ["Try the trail by the lake."]
        fake.reply = lambda body: "Honestly, you are worthless."
        await run(fleet, msg("@skeptic and me?", mentions=frozenset({"skeptic"}), author=Author("u3", "cy")))
        assert len(adapter.replies) == 1
        # Held back whole: the adapter saw no snapshot of it at all.
        assert adapter.cut_off == [""]
        assert "Honestly, you are worthless." in fake.moderated
        await fleet.stop()


async def test_an_ask_command_in_crisis_gets_the_care_message_instead_of_the_answer() -> None:
    fleet, adapter, _ = make_fleet([SKEPTIC], config=NO_FOOTER)
    plan = await run(fleet, Command("test", "c1", "general", HUMAN, "ask", "I want to end my life", persona="skeptic"))
    assert adapter.replies == []
    [notice] = adapter.notices
    assert "988" in notice.text and notice.command_id == "c1" and notice.private
    assert [(d.persona_id, d.reason) for d in plan.decisions] == [("skeptic", "safety:care")]


async def test_a_log_category_is_counted_and_answered() -> None:
    config = {**NO_FOOTER, "safety": {"actions": {"violence": "log"}}}
    fleet, adapter, _ = make_fleet([SKEPTIC], llm=Scripted("Then I will kill you at chess, friend."), config=config)
    metrics = Metrics(fleet)
    await run(fleet, mention("I will kill you at chess"))
    assert len(adapter.replies) == 1
    rendered = metrics.render().decode()
    # One count for the message, one for the whole reply: not one per streamed snapshot.
    assert 'botfleet_safety_events_total{event="flagged:violence"} 2.0' in rendered


async def test_a_reload_that_turns_moderation_off_takes_effect() -> None:
    fleet, adapter, _ = make_fleet([SKEPTIC], config=NO_FOOTER)
    fleet.config = fleet.config.model_copy(
        update={"safety": fleet.config.safety.model_copy(update={"moderation": "off"})}
    )
    await run(fleet, mention("send me nudes"))
    assert len(adapter.replies) == 1
