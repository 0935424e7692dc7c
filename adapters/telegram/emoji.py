"""Telegram lets bots react only with a fixed set of emoji; `botfleet check` flags the others."""

from __future__ import annotations

from collections.abc import Iterable

from telegram.constants import ReactionEmoji

from bots.persona import Persona
from bots.yamlfile import Problem, dotted

ALLOWED = frozenset(e.value for e in ReactionEmoji)


def check_reactions(personas: Iterable[Persona]) -> list[Problem]:
    problems = []
    for p in personas:
        for n, rule in enumerate(p.reactions):
            if rule.emoji not in ALLOWED:
                file, line = p.line_of("reactions", n, "emoji")
                # Numbered as every other problem is (dotted: the first item is [1]).
                field = dotted(("reactions", n, "emoji"))
                problems.append(Problem(file, line, field, f"{rule.emoji!r} is not a reaction Telegram bots may use"))
    return problems
