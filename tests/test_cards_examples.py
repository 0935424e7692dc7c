"""Parsing a card's mes_example into persona examples: the shapes cards are written in."""

from __future__ import annotations

from bots.cards.examples import MAX_EXAMPLES, parse_examples


def test_start_separates_examples_and_lines_continue_the_turn_above() -> None:
    text = (
        "<START>\n{{user}}: Hi.\n{{char}}: Hello.\nHow are you?\n\n<START>\n"
        "{{user}}: Line one\nline two\n{{char}}: Sure.\n"
    )
    pairs, notes = parse_examples(text, "Mira")
    assert pairs == [("Hi.", "Hello.\nHow are you?"), ("Line one\nline two", "Sure.")]
    assert notes == []


def test_several_exchanges_in_one_block_each_become_an_example() -> None:
    text = "<START>\n{{user}}: a\n{{char}}: b\n{{user}}: c\n{{char}}: d"
    assert parse_examples(text, "Mira")[0] == [("a", "b"), ("c", "d")]


def test_speaker_spellings_names_case_and_windows_line_ends() -> None:
    text = "<start>\r\n<USER>: old style\r\n<BOT>: old reply\r\n<Start>\r\n{{User}}: hi\r\nmira: by name\r\n"
    assert parse_examples(text, "Mira")[0] == [("old style", "old reply"), ("hi", "by name")]


def test_consecutive_lines_by_one_speaker_are_one_message() -> None:
    text = "<START>\n{{user}}: first\n{{user}}: second\n{{char}}: one\n{{char}}: two"
    assert parse_examples(text, "Mira")[0] == [("first\nsecond", "one\ntwo")]


def test_unpaired_turns_are_skipped_and_reported() -> None:
    text = (
        "a preamble line\n<START>\n{{char}}: *waves*\n<START>\n{{user}}: anyone?\n<START>\n"
        "{{user}}: \n{{char}}: an empty question is no question\n"
    )
    pairs, notes = parse_examples(text, "Mira")
    assert pairs == []
    assert notes == [
        "mes_example block 0: text before the first speaker line skipped",
        "mes_example block 1: a reply with no message before it skipped",
        "mes_example block 2: a message with no reply skipped",
        "mes_example block 3: a reply with no message before it skipped",
    ]


def test_no_start_marker_is_one_block_and_empty_text_is_no_examples() -> None:
    assert parse_examples("{{user}}: q\n{{char}}: a", "Mira")[0] == [("q", "a")]
    assert parse_examples("", "Mira") == ([], [])
    assert parse_examples("<START>\n<START>\n", "Mira") == ([], [])


def test_a_colon_inside_a_line_is_text_not_a_speaker() -> None:
    text = "<START>\n{{user}}: time?\n{{char}}: It is 10:30: late.\nNote: bring a coat."
    assert parse_examples(text, "Mira")[0] == [("time?", "It is 10:30: late.\nNote: bring a coat.")]


def test_a_long_card_keeps_only_the_first_examples() -> None:
    text = "".join(f"<START>\n{{{{user}}}}: q{n}\n{{{{char}}}}: a{n}\n" for n in range(MAX_EXAMPLES + 3))
    pairs, notes = parse_examples(text, "Mira")
    assert len(pairs) == MAX_EXAMPLES and pairs[0] == ("q0", "a0")
    assert notes == [f"mes_example: kept the first {MAX_EXAMPLES} of {MAX_EXAMPLES + 3} examples (each costs tokens)"]


def test_the_character_may_be_called_by_name_or_nickname() -> None:
    text = "<START>\n{{user}}: a\nMimi: b\n<START>\n{{user}}: c\nMira: d"
    assert parse_examples(text, "Mimi", "Mira")[0] == [("a", "b"), ("c", "d")]
