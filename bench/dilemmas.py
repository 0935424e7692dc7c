"""Fixed inputs shared by bench/models.py and bench/labels.py: 20 dilemmas people bring to the fleet,
the personas that answer them, and a short multi-speaker conversation around each dilemma."""

from __future__ import annotations

from bots.core.ports import Turn

DILEMMAS = [
    "Should I put my savings into my friend's startup?",
    "A course promises I'll earn 10k a month from home. Is it worth it?",
    "Should I quit my job to travel for a year?",
    "My landlord wants to raise the rent by 30 percent. Should I move out?",
    "Is it a good idea to lend my brother money again?",
    "Should I tell my best friend that her partner is cheating?",
    "I got a job offer with more pay but a longer commute. Take it?",
    "Should I go back to university at 40?",
    "My team wants me to lead a project I don't believe in. What do I do?",
    "Should I buy a house now or wait for prices to drop?",
    "Everyone says crypto is a sure thing. Should I get in?",
    "Is it okay to skip my cousin's wedding for a work trip?",
    "Should I adopt a dog while living in a small flat?",
    "My parents want me to take over the family shop. Should I?",
    "Should I report a coworker who keeps taking credit for my work?",
    "Is it worth paying for a premium gym membership?",
    "Should I learn to code or learn a trade?",
    "My friend asked me to co-sign a loan. Should I?",
    "Should I move to another country for my partner?",
    "Is it wrong to use AI to write my wedding speech?",
]

# Personas that answer, in turn (ids of the shipped personas/ files).
ANSWERING = ["skeptic", "stoic", "nerd", "optimist"]

# Lines the other speakers of a conversation say: people and personas, as in a busy group chat.
_PEOPLE = ["alice", "Bob", "carol_92", "Dee"]
_REMARKS = [
    "Honestly I'd do it, you only live once.",
    "Sounds risky to me, what's the catch?",
    "I did something like that last year and regret nothing.",
    "I think you should sleep on it first.",
]
_PERSONA_LINES = {
    "The Optimist": "This could be a great chance to grow, and you can always adjust later!",
    "The Realist": "Look at the numbers first: what does it cost and what do you gain?",
    "The Devil's Advocate": "Let me argue the other side: doing nothing is also a choice with costs.",
    "The Supporter": "Whatever you choose, it's clear you've thought about it carefully.",
}
_PERSONA_IDS = {
    "The Optimist": "optimist",
    "The Realist": "realist",
    "The Devil's Advocate": "debater",
    "The Supporter": "supporter",
}


def conversation(i: int, asked: str) -> list[Turn]:
    """Dilemma i in a group chat: a person asks, two other personas and another person answer, then
    the first person asks the persona called `asked` (its display name) directly."""
    asker = _PEOPLE[i % len(_PEOPLE)]
    other = _PEOPLE[(i + 1) % len(_PEOPLE)]
    names = list(_PERSONA_LINES)
    first, second = names[i % len(names)], names[(i + 1) % len(names)]
    t = float(i * 10)
    return [
        Turn(speaker=asker, text=DILEMMAS[i % len(DILEMMAS)], at=t, user_id="u1", message_id=f"m{i}a"),
        Turn(speaker=first, text=_PERSONA_LINES[first], at=t + 1, persona_id=_PERSONA_IDS[first]),
        Turn(speaker=other, text=_REMARKS[i % len(_REMARKS)], at=t + 2, user_id="u2", message_id=f"m{i}b"),
        Turn(speaker=second, text=_PERSONA_LINES[second], at=t + 3, persona_id=_PERSONA_IDS[second]),
        Turn(speaker=asker, text=f"{asked}, what do you think?", at=t + 4, user_id="u1", message_id=f"m{i}c"),
    ]
