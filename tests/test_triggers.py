import random

from bots.core.events import Author
from bots.core.triggers import TriggerIndex, regex_anchors
from tests.conftest import msg, persona


def hits_for(index: TriggerIndex, text: str, seed: int = 0, **kw) -> dict[str, str]:
    hits, _ = index.match(msg(text, **kw), random.Random(seed))
    return {index.personas[i].id: h.kind for i, h in hits.items()}


def test_mention_by_platform_name_and_id() -> None:
    index = TriggerIndex([persona("skeptic", name="The Skeptic"), persona("nerd")])
    assert hits_for(index, "hello", mentions=frozenset({"skeptic"})) == {"skeptic": "mention"}
    assert hits_for(index, "what does the skeptic say?") == {"skeptic": "mention"}
    assert hits_for(index, "@nerd hi") == {"nerd": "mention"}
    # A name inside another word is not a mention.
    assert hits_for(index, "skeptical nerdy people") == {}


def test_keywords_match_whole_words_case_insensitively() -> None:
    index = TriggerIndex([persona("s", triggers=[{"keywords": ["invest", "can't lose"]}])])
    assert hits_for(index, "Should I INVEST?") == {"s": "keywords"}
    assert hits_for(index, "this can't lose, right") == {"s": "keywords"}
    assert hits_for(index, "investment banking") == {}


def test_regex_runs_only_when_its_anchor_is_present_but_still_matches() -> None:
    index = TriggerIndex(
        [
            persona("a", triggers=[{"regex": r"(?i)\bshould i\b"}]),
            persona("b", triggers=[{"regex": r"\d{3,}"}]),  # no literal anchor: always evaluated
            persona("c", triggers=[{"regex": r"(?i)\b(buy|sell)ing\b"}]),
        ]
    )
    assert hits_for(index, "Should I go?") == {"a": "regex"}
    assert hits_for(index, "it costs 1000") == {"b": "regex"}
    assert hits_for(index, "I am SELLING it") == {"c": "regex"}
    assert hits_for(index, "shoulder") == {}
    assert regex_anchors(r"(?i)\b(invest|stocks?)\b") == {"invest", "stock"}
    assert regex_anchors(r"\d+") is None


def test_reply_and_dm_triggers() -> None:
    index = TriggerIndex([persona("a"), persona("b", triggers=[{"dm": True}])])
    assert hits_for(index, "sure", reply_to_persona="a") == {"a": "reply"}
    assert hits_for(index, "hey", is_dm=True) == {"b": "dm"}
    assert hits_for(index, "hey", is_dm=True, to_persona="a") == {}


def test_chance_uses_the_injected_generator() -> None:
    index = TriggerIndex([persona(f"p{i}", triggers=[{"chance": 0.3}]) for i in range(3)], free_will_cap=3)
    runs = [hits_for(index, "anything", seed=s) for s in range(200)]
    fired = sum(len(r) for r in runs)
    assert 120 < fired < 240  # about 0.3 * 3 * 200 = 180
    assert runs == [hits_for(index, "anything", seed=s) for s in range(200)]  # same seed, same dice
    never = TriggerIndex([persona("x", triggers=[{"keywords": ["hi"], "chance": 0.0}])])
    assert hits_for(never, "hi") == {}


def test_best_trigger_wins_per_persona() -> None:
    index = TriggerIndex([persona("a", triggers=[{"mention": True}, {"keywords": ["money"]}, {"chance": 1.0}])])
    assert hits_for(index, "money talk") == {"a": "keywords"}
    assert hits_for(index, "a, money?") == {"a": "mention"}
    assert hits_for(index, "nothing") == {"a": "chance"}


def test_reactions_fire_on_keywords_and_regex() -> None:
    index = TriggerIndex(
        [
            persona("a", reactions=[{"keywords": ["scam"], "emoji": "🤨"}]),
            persona("b", reactions=[{"regex": r"(?i)\bwe did it\b", "emoji": "🎉"}]),
        ]
    )
    _, reactions = index.match(msg("WE DID IT, not a scam"), random.Random(0))
    assert {(index.personas[r.persona].id, r.emoji) for r in reactions} == {("a", "🤨"), ("b", "🎉")}


def test_persona_author_is_indexed_like_anyone_else() -> None:
    index = TriggerIndex([persona("a"), persona("b")])
    bot = Author(id="persona:a", name="A", is_bot=True, persona_id="a")
    assert hits_for(index, "b what do you think", author=bot) == {"b": "mention"}


def test_a_keyword_rule_with_a_chance_rolls_once_per_message() -> None:
    index = TriggerIndex([persona("a", triggers=[{"keywords": ["invest", "stocks"], "chance": 0.5}])])
    once = sum(bool(hits_for(index, "invest", seed=s)) for s in range(400)) / 400
    many = sum(bool(hits_for(index, "invest in stocks invest invest", seed=s)) for s in range(400)) / 400
    assert 0.4 < once < 0.6 and 0.4 < many < 0.6


def test_ranking_ignores_free_will() -> None:
    ps = [persona(f"p{i}", triggers=[{"command": True}, {"chance": 0.5}]) for i in range(8)]
    ps.append(persona("money", triggers=[{"command": True}, {"keywords": ["money"]}]))
    index = TriggerIndex(ps)
    firsts = {index.personas[index.rank("hello there", range(8), random.Random(s))[0]].id for s in range(40)}
    assert len(firsts) >= 5  # ties broken at random, not by whoever free will picked first
    assert index.personas[index.rank("money?", range(9), random.Random(1))[0]].id == "money"


def test_chance_on_a_mention_is_refused_rather_than_ignored() -> None:
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="chance applies to keywords"):
        persona("a", triggers=[{"mention": True, "chance": 0.5}])
