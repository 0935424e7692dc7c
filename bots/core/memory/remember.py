"""The remembering scheduler: after a persona talked with a person and the conversation went quiet
(memory.quiet_seconds without a new turn, or memory.every_turns replies), ask the LLM in the background
to rewrite that persona's notes about that person.

Nothing here runs on the path of a message: `replied` and `heard` only touch a dict. Updates run in
`tick`, one at a time and only while no reply is being written in this process, through the Brain, so
they count against the persona's and the fleet's token budgets and the breaker (never a person's own
budget: the person did not ask for them). A persona that is quiet (budget, breaker) or a store that is
away leaves the update for a later tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bots.core.brain import IncompleteReply
from bots.core.events import Message, Reply
from bots.core.memory.follow_up import OpenDilemmas
from bots.core.memory.notes import SHARED, NoteBook, for_prompt
from bots.core.memory.summarise import parse_notes, summary_request
from bots.core.ports import LLMError, Turn
from bots.persona import Persona

if TYPE_CHECKING:
    from bots.core.fleet import Fleet

log = logging.getLogger("botfleet.memory")

# Conversations waiting for an update; beyond this the oldest waiting one is given up.
MAX_PENDING = 10_000
PROMPT_HEADER = (
    "What you remember of the person you are answering, from earlier conversations (your own notes, "
    "with dates). Use them naturally when they matter; do not recite them:"
)


@dataclass(slots=True)
class Pending:
    persona_id: str
    platform: str
    user_id: str
    conversation: str
    last: float
    replies: int = 0


@dataclass(frozen=True, slots=True)
class Remembered:
    """What became of one update: written, conflict (another process wrote first), nothing (nothing
    new to remember), later:<why>, skipped:<why> or dropped:<llm error kind>."""

    persona_id: str
    owner: str
    person: str
    conversation: str
    at: float
    outcome: str
    notes: int = 0
    # The notes as written (for `botfleet simulate`; empty unless written).
    texts: tuple[str, ...] = ()


class Memory:
    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.pending: OrderedDict[tuple[str, str, str], Pending] = OrderedDict()
        self._heard: OrderedDict[tuple[str, str], float] = OrderedDict()
        # Erasures per account: an update under way when its person was erased is dropped.
        self._erasures: dict[tuple[str, str], int] = {}
        # Open dilemmas this process knows of, for follow-ups (follow_up.py).
        self.open = OpenDilemmas()
        self.listeners: list[Callable[[Remembered], None]] = []
        self._task: asyncio.Task[None] | None = None
        self._ticking = asyncio.Lock()

    # --- who remembers ---------------------------------------------------------------------------

    def enabled_for(self, p: Persona) -> bool:
        if p.sponsor:
            return False  # a brand persona must not profile people, whatever the config says
        return p.memory if p.memory is not None else self.fleet.config.memory.enabled

    def owner(self, p: Persona) -> str:
        return SHARED if self.fleet.config.memory.shared else p.id

    # --- the message path: bookkeeping only --------------------------------------------------------

    def replied(self, reply: Reply, now: float) -> None:
        """A persona answered a person: their conversation is due for an update once it goes quiet."""
        p = self.fleet.personas.get(reply.persona_id)
        if not reply.to_user or p is None or not self.enabled_for(p):
            return
        key = (p.id, reply.platform, reply.to_user)
        pending = self.pending.pop(key, None)
        if pending is None:
            pending = Pending(p.id, reply.platform, reply.to_user, f"{reply.platform}:{reply.channel}", now)
        pending.conversation = f"{reply.platform}:{reply.channel}"
        pending.last = now
        pending.replies += 1
        self.pending[key] = pending
        while len(self.pending) > MAX_PENDING:
            self.pending.popitem(last=False)

    def heard(self, msg: Message, now: float) -> None:
        """A person spoke: conversations they are in are not quiet yet (one dict write, no scan)."""
        if msg.author.persona_id is not None or not self.pending:
            return
        key = (msg.platform, msg.author.id)
        self._heard.pop(key, None)
        self._heard[key] = now
        while len(self._heard) > MAX_PENDING:
            self._heard.popitem(last=False)

    def _last(self, p: Pending) -> float:
        return max(p.last, self._heard.get((p.platform, p.user_id), 0.0))

    # --- prompts and erasure -----------------------------------------------------------------------

    async def for_prompt(self, p: Persona, reply: Reply) -> str:
        """What p remembers of the person a reply answers, for its prompt ("" if nothing)."""
        if not reply.to_user or not self.enabled_for(p):
            return ""
        store = self.fleet.store
        try:
            person = await store.person_of(reply.platform, reply.to_user)
            book = (await store.notes(person)).get(self.owner(p))
        except Exception:
            # Memory adds to a reply; it must never cost one.
            log.warning("reading notes for %s failed; replying without them", p.id, exc_info=True)
            return ""
        if book is None or not book.notes:
            return ""
        self.open.saw(reply.platform, reply.to_user, self.owner(p), book.notes)
        return PROMPT_HEADER + "\n" + for_prompt(book.notes)

    async def forget(
        self, platform: str, user_id: str, owner: str | None = None, *, unlink: bool = False, now: float | None = None
    ) -> int:
        """Erase notes about the person behind an account (one owner's, or all); returns how many.

        Without `now` (/forget, /optout: the history goes too) the notes are deleted. With it
        (/memory forget, where the history stays) each erased book is replaced by an empty one dated
        `now` with the next version: what was said before is never summarised into notes again, and
        an update already under way (which read the old version) loses its compare-and-set."""
        store = self.fleet.store
        if len(self._erasures) > MAX_PENDING:
            self._erasures.clear()  # bounded; an update racing this very moment is the only loss
        self._erasures[(platform, user_id)] = self._erasures.get((platform, user_id), 0) + 1
        person = await store.person_of(platform, user_id)
        if now is None:
            removed = await store.forget_notes(person, owner)
        else:
            removed = await self._blank(person, owner, now)
        self.open.forget(platform, user_id, owner)
        for key in [k for k in self.pending if k[1] == platform and k[2] == user_id]:
            if owner is None or owner in (SHARED, key[0]):
                del self.pending[key]
        if unlink:
            await store.unlink(platform, user_id)
        return removed

    async def _blank(self, person: str, owner: str | None, now: float) -> int:
        store = self.fleet.store
        books = await store.notes(person)
        removed = 0
        for erased, book in books.items():
            if owner is not None and erased != owner:
                continue
            removed += len(book.notes)
            if not await store.write_notes(person, erased, NoteBook((), book.version + 1, now)):
                # Written meanwhile: delete whatever is there, then leave the empty book.
                await store.forget_notes(person, erased)
                await store.write_notes(person, erased, NoteBook((), 1, now))
        if owner is not None and owner not in books:
            # Nothing noted yet, but the conversation may still be in the history: it stays unnoted.
            await store.write_notes(person, owner, NoteBook((), 1, now))
        return removed

    # --- the updates ---------------------------------------------------------------------------------

    def kick(self) -> None:
        """Run the updates that are due now in the background, unless a round is still running.
        The caller's loop sets the pace (bots/ops/control.py, every few seconds): memory owns no timer,
        so a harness that compresses the fleet's sleep is not sped up by it."""
        if self.pending and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(self._round(), name="botfleet-memory")

    async def _round(self) -> None:
        try:
            await self.tick(self.fleet.clock())
        except Exception:
            log.exception("memory update round failed; trying again next round")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def tick(self, now: float) -> list[Remembered]:
        """Update the notes of every conversation that is due, one at a time; returns what became of each."""
        cfg = self.fleet.config.memory
        out: list[Remembered] = []
        async with self._ticking:
            due = [
                key
                for key, p in self.pending.items()
                if now - self._last(p) >= cfg.quiet_seconds or p.replies >= cfg.every_turns
            ]
            for key in due:
                if self.fleet.replying:
                    break  # never compete with a reply for the model: the rest wait for the next round
                pending = self.pending.pop(key, None)
                if pending is None:
                    continue
                done = await self._update(pending, now)
                if done.outcome.startswith("later:") and key not in self.pending:
                    self.pending[key] = pending
                out.append(done)
                for listener in self.listeners:
                    listener(done)
        return out

    async def _update(self, pending: Pending, now: float) -> Remembered:
        fleet = self.fleet
        p = fleet.personas.get(pending.persona_id)
        person = f"{pending.platform}:{pending.user_id}"

        def result(outcome: str, owner: str = "", notes: int = 0, texts: tuple[str, ...] = ()) -> Remembered:
            return Remembered(pending.persona_id, owner, person, pending.conversation, now, outcome, notes, texts)

        if p is None or not self.enabled_for(p):
            return result("skipped:off")
        owner = self.owner(p)
        store = fleet.store
        try:
            if await store.is_opted_out(pending.platform, pending.user_id):
                return result("skipped:opted_out", owner)
            quiet = fleet.gate.quiet(p, pending.platform, None, now)
            if quiet:
                return result(f"later:{quiet}", owner)
            person = await store.person_of(pending.platform, pending.user_id)
            book = (await store.notes(person)).get(owner) or NoteBook()
            history = await store.history(pending.conversation, fleet.config.llm.history_turns)
        except Exception:
            log.warning("memory of %s: the store did not answer; trying later", p.id, exc_info=True)
            return result("later:store", owner)
        turns = _theirs(history, pending.user_id, None if owner == SHARED else p.id)
        new = turns if book.version == 0 else [t for t in turns if t.at > book.updated]
        if not any(t.user_id == pending.user_id for t in new):
            # Nothing they said since the last update (another process may have made it): no call.
            return result("nothing", owner, len(book.notes))
        name = next(t.speaker for t in reversed(new) if t.user_id == pending.user_id)
        erasures = self._erasures.get((pending.platform, pending.user_id), 0)
        cfg = fleet.config
        # Only what was said since the last update: the notes carry everything before it.
        request = summary_request(p, name, book.notes, new, cfg.memory, p.model.name or cfg.llm.model)
        text = ""
        try:
            async for part in fleet.brain.write(p, request):
                text += part
        except LLMError as exc:
            log.warning("memory of %s not updated: %s", p.id, exc.kind)
            return result(f"dropped:{exc.kind}", owner)
        except IncompleteReply:
            return result("dropped:incomplete", owner)
        notes = parse_notes(text, book.notes, at=now, conversation=pending.conversation, owner=owner, cfg=cfg.memory)
        updated = max(t.at for t in new)
        if self._erasures.get((pending.platform, pending.user_id), 0) != erasures:
            return result("skipped:forgotten", owner)
        try:
            if await store.is_opted_out(pending.platform, pending.user_id):
                return result("skipped:opted_out", owner)
            written = await store.write_notes(person, owner, NoteBook(notes, book.version + 1, updated))
        except Exception:
            log.warning("memory of %s: writing notes failed; trying later", p.id, exc_info=True)
            return result("later:store", owner)
        if not written:
            return result("conflict", owner)
        self.open.saw(pending.platform, pending.user_id, owner, notes)
        return result("written", owner, len(notes), tuple(n.text for n in notes))


def _theirs(history: list[Turn], user_id: str, persona_id: str | None) -> list[Turn]:
    """The person's turns and the persona's (every persona's when notes are shared)."""
    return [
        t
        for t in history
        if t.user_id == user_id or (t.persona_id is not None and (persona_id is None or t.persona_id == persona_id))
    ]
