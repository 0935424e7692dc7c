"""Telegram lets bots react only with a fixed set of emoji; `botfleet check` flags the others."""

from __future__ import annotations

from collections.abc import Iterable

from telegram.constants import ReactionEmoji

from bots.persona import Persona
from bots.yamlfile import Problem

ALLOWED = frozenset(e.value for e in ReactionEmoji)


def check_reactions(personas: Iterable[Persona]) -> list[Problem]:
    problems = []
    for p in personas:
        for n, rule in enumerate(p.reactions):
            if rule.emoji not in ALLOWED:
                file, line = p.line_of("reactions", n, "emoji")
                problems.append(
                    Problem(
                        file, line, f"reactions[{n}].emoji", f"{rule.emoji!r} is not a reaction Telegram bots may use"
                    )
                )
    return problems
