"""Slash command interactions: acknowledged at once, turned into Command events, and answered by
follow-ups with what the core decides (notices, the intro of /ask and /panel)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import discord

from adapters.discord.common import LIMIT, PLATFORM, Bounded, Tasks, nobody
from bots.core.commands import CommandSpec
from bots.core.events import Author, Command, Notice, Reply
from bots.core.ports import FleetView
from bots.core.text import split_text
from bots.persona import Persona

log = logging.getLogger("botfleet.discord")

# Interaction tokens live 15 minutes; follow-ups after that fail.
INTERACTION_SECONDS = 14 * 60.0
# How long a deferred interaction may wait for the core's answer before it is closed off.
SETTLE_SECONDS = 5.0
OPTED_OUT = "You opted out, so the personas won't answer you. /optin to change that."


@dataclass
class Pending:
    interaction: discord.Interaction[Any]
    at: float
    private: bool = False  # deferred ephemerally: the first follow-up is private whatever it asks
    answered: bool = False
    # The "thinking…" message was filled in or removed: follow-ups are now messages of their own. Until
    # then Discord turns the first follow-up into it, public or not, whatever flags it carries.
    filled: bool = False
    # Set once the intro of /ask or /panel is out (or will not be): notices come after it.
    decided: asyncio.Event = field(default_factory=asyncio.Event)
    # One follow-up at a time, so which one fills the "thinking…" message is known.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Interactions:
    def __init__(
        self,
        fleet: Callable[[], FleetView | None],
        named: Callable[[str], Persona | None],
        tasks: Tasks,
        clock: Callable[[], float],
    ) -> None:
        self._fleet = fleet
        self._named = named
        self._tasks = tasks
        self._clock = clock
        self._pending: dict[str, Pending] = {}
        # "thinking…" message id -> set once the intro filling it is out (answers reply to that message).
        self._intros: Bounded = Bounded(1000)

    async def run(self, interaction: discord.Interaction[Any], spec: CommandSpec, values: Mapping[str, Any]) -> None:
        persona, args = _arguments(spec, values)
        is_admin = bool(interaction.permissions.manage_messages)
        deferred = await self._defer(interaction, spec.name, spec.private or (spec.admin and not is_admin))
        if deferred is None:
            return
        pending, thinking = deferred
        intro = self._intro(interaction, spec.name, args, persona)
        # Persona answers reply to the "thinking…" message, which the intro then fills in.
        reply_to = str(thinking) if intro and thinking and not pending.private else None
        command = _command_event(interaction, spec.name, args, persona, is_admin, reply_to)
        if reply_to is not None:
            self._intros[reply_to] = pending.decided
        try:
            await self._decide(command, pending, intro)
        finally:
            pending.decided.set()
        self._tasks.spawn(self._settle(pending, command.key))

    async def _decide(self, command: Command, pending: Pending, intro: str) -> None:
        fleet = self._fleet()
        if fleet is not None:
            await fleet.dispatch(command)
        # Only once the core has decided: an opted-out user's question is not announced to the channel.
        if intro and self._will_reply(command.key):
            await self._post_intro(pending, command.name, intro)

    async def _defer(
        self, interaction: discord.Interaction[Any], name: str, private: bool
    ) -> tuple[Pending, int | None] | None:
        """Acknowledge within 3 s, before anything slow: the answers come as follow-ups."""
        try:
            deferred = await interaction.response.defer(ephemeral=private, thinking=True)
        except discord.HTTPException as exc:
            log.warning("discord: /%s could not be acknowledged: %s", name, exc)
            return None
        pending = Pending(interaction, self._clock(), private)
        self._remember(str(interaction.id), pending)
        return pending, deferred.message_id if deferred is not None else None

    def _intro(self, interaction: discord.Interaction[Any], name: str, args: str, persona: str | None) -> str:
        """/ask, /panel, /more: what is happening, said before the personas answer ("" for the rest)."""
        user = interaction.user.display_name
        if name == "ask":
            target = self._named(persona or "")
            return f"**{user}** asked {target.name if target else 'the personas'}: {args}"[:LIMIT]
        if name == "panel":
            return f"**{user}** asked the panel: {args}"[:LIMIT]
        return "Asking two more followers…" if name == "more" else ""

    def _plan(self, key: str) -> Any:
        audit = getattr(self._fleet(), "audit", None)
        return audit.get(key) if isinstance(audit, dict) else None

    def _will_reply(self, key: str) -> bool:
        """Whether the core's plan for an event has replies (True when there is no audit to read)."""
        plan = self._plan(key)
        return plan is None or any(isinstance(a, Reply) for a in plan.actions)

    async def _post_intro(self, pending: Pending, name: str, text: str) -> None:
        async with pending.lock:
            try:
                await pending.interaction.followup.send(text, ephemeral=pending.private, allowed_mentions=nobody())
            except discord.HTTPException as exc:
                log.warning("discord: /%s follow-up failed: %s", name, exc)
                return
            pending.answered = pending.filled = True

    def _remember(self, key: str, pending: Pending) -> None:
        now = self._clock()
        for old in [k for k, p in self._pending.items() if now - p.at > INTERACTION_SECONDS]:
            del self._pending[old]
        self._pending[key] = pending

    async def _settle(self, pending: Pending, key: str) -> None:
        """A command the core does not answer (from someone who opted out, say) must not stay "thinking"."""
        plan = self._plan(key)
        if plan is None:
            # No audit to read what the core decided: give its answers time to arrive instead.
            fleet = self._fleet()
            await (fleet.sleep(SETTLE_SECONDS) if fleet is not None else asyncio.sleep(SETTLE_SECONDS))
        elif plan.actions:
            return
        if pending.answered:
            return
        pending.answered = True
        text = OPTED_OUT if getattr(plan, "note", "") == "opted_out" else "Done."
        await self._follow_up(pending, text, private=True)

    async def intro_first(self, reply_to: str | None) -> None:
        """A persona answering /ask or /panel waits for the intro: the question shows before the answers."""
        decided: asyncio.Event | None = self._intros.get(reply_to or "")
        if decided is not None:
            await decided.wait()

    async def answer(self, notice: Notice) -> bool:
        """Answer a notice through its command's interaction; False when there is none to answer."""
        pending = self._pending.get(notice.command_id or "")
        if pending is None or self._clock() - pending.at >= INTERACTION_SECONDS:
            return False
        pending.answered = True
        await pending.decided.wait()
        await self._follow_up(pending, notice.text, private=notice.private)
        return True

    async def _follow_up(self, pending: Pending, text: str, *, private: bool) -> None:
        name = getattr(pending.interaction.command, "name", "?")
        async with pending.lock:
            if private and not pending.private and not pending.filled:
                # The first follow-up would fill in the public "thinking…" message, ephemeral or not:
                # remove that message, so the private answer comes as a message of its own.
                try:
                    await pending.interaction.delete_original_response()
                except discord.HTTPException as exc:
                    log.warning("discord: /%s: could not withdraw the public reply, so no private one: %s", name, exc)
                    return
            pending.filled = True
            try:
                for chunk in split_text(text, LIMIT):
                    await pending.interaction.followup.send(chunk, ephemeral=private, allowed_mentions=nobody())
            except discord.HTTPException as exc:
                log.warning("discord: answering /%s failed: %s", name, exc)


def _arguments(spec: CommandSpec, values: Mapping[str, Any]) -> tuple[str | None, str]:
    """ "persona" options name the persona; the rest (the question, a list of ids) are the arguments."""
    persona = next((values.get(o.name) for o in spec.options if o.kind == "persona"), None)
    args = " ".join(str(values[o.name]) for o in spec.options if o.kind != "persona" and values.get(o.name))
    return (str(persona) if persona else None), args


def _command_event(
    interaction: discord.Interaction[Any],
    name: str,
    args: str,
    persona: str | None,
    is_admin: bool,
    reply_to: str | None,
) -> Command:
    channel = interaction.channel
    channel_id = interaction.channel_id or 0
    parent: int | None = None
    channel_name = getattr(channel, "name", "") or ""
    if isinstance(channel, discord.Thread):
        parent = channel.parent_id
        channel_name = channel.parent.name if channel.parent else channel_name
    return Command(
        platform=PLATFORM,
        id=str(interaction.id),
        channel=str(channel_id),
        author=Author(id=str(interaction.user.id), name=interaction.user.display_name, is_admin=is_admin),
        name=name,
        args=args.strip(),
        persona=persona or None,
        is_dm=interaction.guild_id is None,
        channel_name=channel_name,
        parent_channel=str(parent) if parent else None,
        reply_to_id=reply_to,
    )
