"""The person's side of relationship memory: /memory shows and erases what personas remember about
them, /link lets notes follow them to their account on another platform. Registered in
bots/core/commands.py like every command."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from bots.core.events import Command, Notice
from bots.core.memory.notes import SHARED, NoteBook, day_of
from bots.core.plan import Plan

if TYPE_CHECKING:
    from bots.core.fleet import Fleet

# Link codes: no look-alike characters, 8 of them (about 40 bits), usable once within memory.link_minutes.
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 8


def _private(cmd: Command, text: str) -> Notice:
    return Notice(
        platform=cmd.platform,
        channel=cmd.channel,
        text=text,
        reply_to=cmd.reply_to_id or cmd.id,
        private=True,
        to_user=cmd.author.id,
        command_id=cmd.id,
    )


def memory_about(fleet: Fleet) -> str:
    """The sentence /about says about memory."""
    cfg = fleet.config
    if not cfg.memory.enabled and not any(p.memory for p in fleet.personas.values()):
        return ""
    who = "the personas together" if cfg.memory.shared else "each persona"
    return (
        f" After a conversation, {who} may keep up to {cfg.memory.max_notes} short notes about you (things you "
        f"shared, your open dilemmas), with dates, for {cfg.retention_days} days after the last update; "
        "sponsored personas keep none. /memory shows them, /memory forget <persona|all> erases them."
    )


def show(fleet: Fleet, books: dict[str, NoteBook]) -> str:
    names = {p.id: p.name for p in fleet.personas.values()}
    parts: list[str] = []
    for owner, book in sorted(books.items()):
        if not book.notes:
            continue
        who = (
            "All personas (shared notes) remember"
            if owner == SHARED
            else f"{names.get(owner, owner)} ({owner}) remembers"
        )
        lines = [f"- {day_of(n.at)}, {n.conversation}: {n.text}{' (open)' if n.open else ''}" for n in book.notes]
        parts.append(f"{who}:\n" + "\n".join(lines))
    if not parts:
        return "No persona remembers anything about you."
    days = fleet.config.retention_days
    return "\n\n".join(parts) + f"\n\nKept {days} days after the last update. Erase: /memory forget <persona|all>."


async def memory(fleet: Fleet, cmd: Command, plan: Plan, now: float) -> None:
    words = cmd.args.split()
    if not words:
        person = await fleet.store.person_of(cmd.platform, cmd.author.id)
        plan.actions.append(_private(cmd, show(fleet, await fleet.store.notes(person))))
        return
    if words[0].lower() != "forget" or len(words) != 2:
        plan.actions.append(_private(cmd, "Usage: /memory, or /memory forget <persona|all>"))
        return
    target = words[1]
    owner: str | None = None
    label = "every persona's"
    if target.lower() != "all":
        found = fleet.find_persona(target)
        if found is None:
            from bots.core.commands import no_such_persona  # the commands module imports this one

            plan.actions.append(_private(cmd, no_such_persona(fleet, target)))
            return
        owner = fleet.memory.owner(found)
        label = "the shared" if owner == SHARED else f"{found.name}'s"
    removed = await fleet.memory.forget(cmd.platform, cmd.author.id, owner, now=now)
    plan.actions.append(_private(cmd, f"Erased {label} notes about you ({removed} note(s))."))


async def link(fleet: Fleet, cmd: Command, plan: Plan, now: float) -> None:
    code = cmd.args.strip().upper()
    store = fleet.store
    if not code:
        code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
        person = await store.person_of(cmd.platform, cmd.author.id)
        minutes = fleet.config.memory.link_minutes
        if not await store.offer_link(code, person, minutes * 60, now):
            plan.actions.append(_private(cmd, "Linking is unavailable right now; try again in a while."))
            return
        text = (
            f"Your link code: {code}. Within {minutes:g} minutes, send /link {code} from your account on "
            "the other platform; what the personas remember about you then follows you there. /forget undoes it."
        )
        plan.actions.append(_private(cmd, text))
        return
    own = f"{cmd.platform}:{cmd.author.id}"
    before = await store.person_of(cmd.platform, cmd.author.id)
    joined = await store.redeem_link(code, cmd.platform, cmd.author.id, now)
    if joined is None:
        text = "That code is unknown or expired; /link on your other account gives a new one."
        plan.actions.append(_private(cmd, text))
        return
    if joined in (own, before):
        plan.actions.append(_private(cmd, "That code is this account's own; use it on your other account."))
        return
    # Notes kept about this account alone would be out of sight of /memory from now on: erase them.
    dropped = await store.forget_notes(before)
    extra = f" {dropped} note(s) kept about this account alone were erased." if dropped else ""
    plan.actions.append(_private(cmd, f"Linked: the personas' memory of you is now shared by both accounts.{extra}"))
