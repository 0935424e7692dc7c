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
        "jveux plus vivre",
        "chui fatiguée de vivre",
        "thinking about sucide again",
        "s*icide is all I think about",
        "gonna k1ll myslef",
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
    "text",
    [
        "honestly I don't even want to be alive anymore",
        "my kids would be happier if I was gone",
        "I'm just a burden to my family",
        "I don't see the point in living",
        "I've been saving up my sleeping pills",
        "je ne mérite pas de vivre",
        "je pense sans arrêt à me suicider",
        "ils seraient plus heureux sans moi",
        "je vais en finir ce soir",
        "je me scarifie depuis l'été",
    ],
)
def test_indirect_first_person_distress_is_found(text: str) -> None:
    assert categories(text) == ("self_harm",)


@pytest.mark.parametrize(
    "text",
    [
        "that trade was career suicide",
        "I'm thinking about ending it with my boyfriend",
        "I want to disappear to a cabin for a week",
        "our startup is going to die if we don't raise money",
        "I don't want to go on the trip",
        "c'est du suicide de sortir sans manteau",
        "il faut en finir avec ce débat",
        "je me coupe une part de gâteau",
        "je regarde la coupe du monde",
        "je pense que mon patron va me tuer",
    ],
)
def test_idioms_near_the_distress_phrases_stay_clear(text: str) -> None:
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
        ("I'm gonna beat the hell out of him", "violence"),
        ("on va le tabasser", "violence"),
        ("do everyone a favor and disappear", "harassment"),
        ("tout le monde te déteste", "harassment"),
        ("refugees are parasites", "hate"),
        ("les étrangers sont tous des voleurs", "hate"),
        ("strip for me", "sexual"),
        ("déshabille-toi", "sexual"),
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
    # Texting forms of "je", and one typo or masked letter in a keyword.
    assert fold("jveux, j'me, chui") == "je veux je me je suis"
    assert fold("sucide s*icide suiside myslef") == "suicide suicide suicide myself"
    # A prefix ("suicid*" in a list) or a longer form is not "corrected".
    assert fold("suicid suicides system simple") == "suicid suicides system simple"


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
    nested = Lexicon.build([{"b": ["end (it all|my (life|days))", "i ~ to die"]}])
    assert nested.hits(fold("I want to end my days"), ["b"]) == ("b",)
    assert nested.hits(fold("end it all"), ["b"]) == ("b",)
    assert nested.hits(fold("end my week"), ["b"]) == ()
    # "~" and "_" start a new word: "is going to die" is not "i" + "s going to die".
    assert nested.hits(fold("i really want to die"), ["b"]) == ("b",)
    assert nested.hits(fold("it is going to die"), ["b"]) == ()


def test_unbalanced_parentheses_are_an_error() -> None:
    with pytest.raises(ValueError, match="unbalanced"):
        Lexicon.build([{"a": ["end (my life"]}])
    with pytest.raises(ValueError, match="only follows a"):
        Lexicon.build([{"a": ["si je suis morte?"]}])


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


def test_a_huge_message_is_moderated_by_its_start_and_end() -> None:
    from bots.core.safety.moderator import MODERATED_HEAD, MODERATED_TAIL, moderated_part

    huge = "I want to kill myself. " + "la " * 400_000 + " see you"
    part = moderated_part(huge)
    assert len(part) <= MODERATED_HEAD + MODERATED_TAIL + 1
    assert part.startswith("I want to kill myself.") and part.endswith(" see you")
    assert moderated_part("short") == "short"


@pytest.mark.timeout(60)
def test_a_huge_word_next_to_a_mention_folds_in_one_pass() -> None:
    # "@" is a leetspeak letter: the leet pass once restarted at every position of a long word without
    # one, so a 1 MB word took hours to fold (the event loop with it). Linear, it takes milliseconds.
    from bots.core.safety.normalize import fold

    assert fold("@bob " + "a" * 1_000_000 + "!") == "abob a"
    assert fold("hey @bob k1ll") == "hey abob kil"  # repeated letters collapse too
