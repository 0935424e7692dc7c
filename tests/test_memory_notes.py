"""Notes: bounds, the secret filter, and how a summariser's answer becomes notes."""

from __future__ import annotations

import pytest

from bots.config import MemoryConfig
from bots.core.memory.notes import Note, bounded, looks_secret
from bots.core.memory.summarise import parse_notes


@pytest.mark.parametrize(
    "text",
    [
        "Their card is 4111 1111 1111 1111",
        "Bank account 12345678",
        "Login code 493 201",
        "Their password is hunter2",
        "Uses the API key sk-abcdefghijklmnop",
        "token ghp_16C7e42F292c6912E7710c838347Ae178B4a",
        "Mail them at alice@example.com",
        "Phone +44 20 7946 0958",
    ],
)
def test_secrets_are_recognised(text: str) -> None:
    assert looks_secret(text)


@pytest.mark.parametrize(
    "text",
    ["Plans to open a bakery in 2027", "Opening day set for 2026-03-01", "Has 2 kids and a 3-year plan", ""],
)
def test_ordinary_notes_are_not_secrets(text: str) -> None:
    assert not looks_secret(text)


def note(text: str, at: float = 0.0) -> Note:
    return Note(text, at, "tg:c", "skeptic")


def test_bounded_keeps_count_and_characters_and_drops_secrets_and_repeats() -> None:
    notes = [note("a" * 30), note("pin is 4821"), note("A" * 30), note("b" * 30), note("c" * 30)]
    assert [n.text for n in bounded(notes, 10, 50)] == ["a" * 30]  # the secret and the repeat go
    assert [n.text[0] for n in bounded(notes, 2, 600)] == ["a", "b"]
    assert bounded([note("  spaced \n out  ")], 10, 600)[0].text == "spaced out"


def test_parse_keeps_the_date_of_a_note_that_did_not_change() -> None:
    cfg = MemoryConfig(max_notes=3, max_chars=200)
    prior = (Note("Plans a bakery", 100.0, "tg:general", "skeptic", open=True),)
    text = (
        "Here are the notes:\n- [open] Plans a bakery\n- Has saved for a year\n* Card 4111 1111 1111 1111\n- (nothing)"
    )
    notes = parse_notes(text, prior, at=500.0, conversation="tg:kitchen", owner="skeptic", cfg=cfg)
    assert [(n.text, n.at, n.conversation, n.open) for n in notes] == [
        ("Plans a bakery", 100.0, "tg:general", True),
        ("Has saved for a year", 500.0, "tg:kitchen", False),
    ]
    assert parse_notes("- (nothing)", prior, at=1, conversation="c", owner="o", cfg=cfg) == ()
