from bots.core.text import ZWSP, sanitize, split_text


def test_sanitize_defuses_every_ping() -> None:
    out = sanitize("@everyone look <@&123> <@456> <@!789> @here and @bob")
    assert "@everyone" not in out and "@here" not in out and "@bob" not in out
    assert "<@" not in out
    assert out.startswith(f"@{ZWSP}everyone look @{ZWSP}role @{ZWSP}someone @{ZWSP}someone")


def test_sanitize_drops_a_speaker_prefix_the_model_copied() -> None:
    assert sanitize("The Skeptic: are you sure?", "The Skeptic") == "are you sure?"
    assert sanitize("Skeptic: are you sure?", "The Skeptic") == "are you sure?"
    assert sanitize("Note: keep it", "The Skeptic") == "Note: keep it"


def test_split_prefers_paragraphs_then_sentences_then_words() -> None:
    para = "First paragraph. " * 10
    text = f"{para.strip()}\n\n{para.strip()}"
    parts = split_text(text, 200)
    assert parts == [para.strip(), para.strip()]
    sentences = " ".join(f"Sentence number {i} is here." for i in range(200))
    parts = split_text(sentences, 2000)
    assert all(len(p) <= 2000 for p in parts) and len(parts) == 3
    assert all(p.endswith(".") for p in parts)
    assert " ".join(parts) == sentences


def test_split_hard_cuts_only_words_longer_than_the_limit() -> None:
    assert split_text("x" * 4500, 2000) == ["x" * 2000, "x" * 2000, "x" * 500]
    assert split_text("short", 2000) == ["short"]
    assert split_text("   ", 10) == []


def test_a_2500_character_reply_is_two_messages() -> None:
    text = ("word " * 500).strip()  # 2,499 characters, no sentence ends
    parts = split_text(text, 2000)
    assert len(parts) == 2 and all(len(p) <= 2000 for p in parts)
