"""A persona following up on its own: when a person with an open dilemma older than
memory.follow_up_days writes anywhere, the persona that noted it may ask how it went, with
probability memory.follow_up_chance and within its limits (the gate decides, like any reply).

Deciding stays cheap: this reads an in-process index of open notes (filled when this process writes
or reads a person's notes), never the store and never the LLM. A process that never saw the notes
does not follow up on them; a follow-up is asked once per note per process.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

from bots.core.events import Message, Reply
from bots.core.gate import Candidate, Where
from bots.core.memory.notes import SHARED, Note
from bots.core.plan import Plan

if TYPE_CHECKING:
    from bots.core.fleet import Fleet

MAX_PEOPLE = 50_000
DAY = 86400.0


class OpenDilemmas:
    """(platform, user) -> persona id -> the oldest open note it holds about them."""

    def __init__(self) -> None:
        self._open: OrderedDict[tuple[str, str], dict[str, Note]] = OrderedDict()
        self._asked: set[tuple[str, str, str, float]] = set()

    def saw(self, platform: str, user_id: str, owner: str, notes: tuple[Note, ...]) -> None:
        if owner == SHARED:
            return  # shared notes have no one persona to follow up; left to the persona answering
        key = (platform, user_id)
        held = self._open.setdefault(key, {})
        open_notes = [n for n in notes if n.open]
        if open_notes:
            held[owner] = min(open_notes, key=lambda n: n.at)
        else:
            held.pop(owner, None)
        if not held:
            del self._open[key]
        while len(self._open) > MAX_PEOPLE:
            self._open.popitem(last=False)

    def forget(self, platform: str, user_id: str, owner: str | None = None) -> None:
        held = self._open.get((platform, user_id))
        if held is None:
            return
        if owner is None or owner == SHARED:
            held.clear()
        else:
            held.pop(owner, None)
        if not held:
            del self._open[(platform, user_id)]

    def due(self, platform: str, user_id: str, before: float) -> list[tuple[str, Note]]:
        held = self._open.get((platform, user_id))
        if not held:
            return []
        return [
            (owner, note)
            for owner, note in held.items()
            if note.at <= before and (platform, user_id, owner, note.at) not in self._asked
        ]

    def asked(self, platform: str, user_id: str, owner: str, note: Note) -> None:
        self._asked.add((platform, user_id, owner, note.at))
        if len(self._asked) > MAX_PEOPLE:
            self._asked.clear()  # at worst someone is asked twice; memory stays bounded


def instruction(name: str, note: Note) -> str:
    return (
        f"A few days ago {name} told you about this, and it was still open: {note.text}. "
        "Answer what they say now, and ask them briefly, in your own voice, how it turned out."
    )


async def follow_up(fleet: Fleet, msg: Message, plan: Plan, now: float) -> None:
    author = msg.author
    cfg = fleet.config.memory
    if author.persona_id is not None or author.is_bot or cfg.follow_up_chance <= 0:
        return
    due = fleet.memory.open.due(msg.platform, author.id, now - cfg.follow_up_days * DAY)
    if not due:
        return
    replying = {a.persona_id for a in plan.actions if isinstance(a, Reply)}
    for owner, note in due:
        p = fleet.personas.get(owner)
        if p is None or owner in replying or not fleet.memory.enabled_for(p):
            continue
        if fleet.rng.random() >= cfg.follow_up_chance:
            continue
        where = Where.of(msg, author.id)
        chosen = await fleet.gate.admit(plan, where, [Candidate(p, "memory:follow_up")], 1, now)
        if not chosen:
            continue
        fleet.memory.open.asked(msg.platform, author.id, owner, note)
        fleet.gate.reply(
            plan,
            where,
            chosen[0],
            delay=fleet.gate.stagger(len(replying) + 1)[-1],
            reply_to=msg.id,
            root=msg.key,
            instruction=instruction(author.name, note),
        )
        return  # one follow-up per message is plenty
