"""What the fleet decided about one event: a Decision per persona considered, and the Plan of actions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from bots.core.events import Action, Event


@dataclass(frozen=True, slots=True)
class Decision:
    persona_id: str
    action: Literal["reply", "react", "skip"]
    reason: str


@dataclass(slots=True)
class Plan:
    event: Event
    decisions: list[Decision] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    # Why nothing at all happened (duplicate, opted_out, foreign_bot), for audit and logs.
    note: str = ""
    at: float = 0.0
    # The event's claim was done when it was taken (nothing could come of it): nobody settles it later.
    settled: bool = False
