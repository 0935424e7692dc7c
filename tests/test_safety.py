"""The local moderator's lists: obfuscations still hit, benign look-alikes stay clear, both languages."""

from __future__ import annotations

from pathlib import Path

import pytest

from bots.core.safety.lexicon import Lexicon, language, parse
from bots.core.safety.moderator import LocalModerator
from bots.core.safety.normalize import fold
from bots.core.safety.rules import professional
from bots.persona import load_personas
from tests.conftest import persona

LOCAL = LocalModerator()


def categories(text: str) -> tuple[str, ...]:
    return LOCAL.check_now(text).categories


@pytest.mark.parametrize(
    "text",
    [
        "I want to kill myself",
        "i w4nt t0 d1e",
        "k i l l   m y s e l f",
        "s.u.i.c.i.d.e",
        "sui-cide is on my mind",
        "thinking about suiiiicide",
        "I'm going to END MY LIFE tonight",
        "j'ai envie de mourir",
        "je vais me tuer",
        "je vais m’ouvrir les veines",
        "je pense au suïcide",
    ],
)
def test_self_harm_is_found_through_obfuscation(text: str) -> None:
    assert categories(text) == ("self_harm",)


@pytest.mark.parametrize(
    "text",
    [
        "this bug is killing me",
        "kill the process and restart it",
        "je meurs de rire",
        "I'm dying to see that movie",
        "ce projet va me tuer",
        "we watched Suicide Squad last night",
        "that's a killer feature",
        "I could die of laughter",
        "Le procès a tué le suspense",
        "Hello there, how are you?",
    ],
)
def test_benign_look_alikes_stay_clear(text: str) -> None:
    assert categories(text) == ()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I will kill you", "violence"),
        ("je vais te buter", "violence"),
        ("you are worthless", "harassment"),
        ("ferme ta gueule", "harassment"),
        ("all immigrants should die", "hate"),
        ("send me nudes", "sexual"),
    ],
)
def test_other_categories(text: str, expected: str) -> None:
    assert expected in categories(text)


def test_local_only_sections() -> None:
    assert LOCAL.sections("Only today! Buy now", ("pressure",)) == ("pressure",)
    assert LOCAL.sections("Dernière chance : commandez maintenant", ("pressure",)) == ("pressure",)
    assert LOCAL.sections("I'm human, trust me", ("human_claim",)) == ("human_claim",)
    assert LOCAL.sections("I'm not human, I'm an AI persona", ("human_claim",)) == ()
    assert LOCAL.sections("should I put my savings into it?", ("medical", "legal", "financial")) == ("financial",)


def test_folding() -> None:
    assert fold("Ça VA, l’été? I'm sure, don't worry") == "ca va l ete im sure dont wory"
    assert fold("H3LL0 w0rld") == "helo world"
    assert fold("2024 was 4 good") == "2024 was 4 god"


def test_language() -> None:
    assert language("je ne sais pas quoi faire") == "fr"
    assert language("I do not know what to do") == "en"


def test_a_phrase_before_a_section_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"x\.txt:2: a phrase before any"):
        parse("# comment\nkill\n", "x.txt")


def test_phrase_syntax() -> None:
    lexicon = Lexicon.build([{"a": ["(im|i am) (a)? human", "run*"]}])
    assert lexicon.hits(fold("I am a human"), ["a"]) == ("a",)
    assert lexicon.hits(fold("im human"), ["a"]) == ("a",)
    assert lexicon.hits(fold("im not human"), ["a"]) == ()
    assert lexicon.hits(fold("running"), ["a"]) == ("a",)
    assert lexicon.hits(fold("rerun"), ["a"]) == ()


def test_professional_personas() -> None:
    assert professional(persona("doc", name="Dr. Mia", bio="A friendly family doctor"))
    assert professional(persona("avocat", name="Maître Paul", bio="Avocat au barreau de Lyon"))
    assert not professional(persona("stoic", name="The Stoic", bio="Calm, ancient wisdom"))


def test_shipped_personas_pass_their_own_checks() -> None:
    for p in load_personas(Path(__file__).resolve().parent.parent / "personas"):
        assert not professional(p), p.id
        for ex in p.examples:
            assert categories(ex.user) == (), (p.id, ex.user)
            assert categories(ex.reply) == (), (p.id, ex.reply)
            checks = ("human_claim", "pressure") if p.sponsor else ("human_claim",)
            assert LOCAL.sections(ex.reply, checks) == (), (p.id, ex.reply)
