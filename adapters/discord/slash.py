"""Slash commands, generated from the one command table (bots.core.commands.COMMANDS), and their sync.

Each command's callback is built with a `__signature__` naming its options, since discord.py reads
the callback's signature to build the options Discord shows: one generic callback per command hands
the values to the adapter, so a command added to the table needs nothing here.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any, Optional, cast

import aiohttp
import discord
from discord import app_commands

from bots.core.commands import CommandSpec, Option

log = logging.getLogger("botfleet.discord")

# Runs one command: the interaction, its spec, and the option values by name.
Run = Callable[[discord.Interaction[Any], CommandSpec, Mapping[str, Any]], Awaitable[None]]
Complete = Callable[[discord.Interaction[Any], str], Coroutine[Any, Any, list[app_commands.Choice[str]]]]
# Every context, as Discord assumes for a command that names none (guild, bot DM, private channel).
ALL_CONTEXTS = [0, 1, 2]


def _parameter(option: Option) -> inspect.Parameter:
    return inspect.Parameter(
        option.name,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        annotation=str if option.required else Optional[str],  # noqa: UP045 - discord.py resolves typing.Optional
        default=inspect.Parameter.empty if option.required else None,
    )


def make_command(
    spec: CommandSpec, run: Run, completers: Mapping[str, Complete]
) -> app_commands.Command[Any, ..., None]:
    async def callback(interaction: discord.Interaction[Any], **values: Any) -> None:
        await run(interaction, spec, values)

    first = inspect.Parameter("interaction", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=discord.Interaction)
    # Required options first: Discord refuses an optional option before a required one.
    options = sorted(spec.options, key=lambda o: not o.required)
    callback.__signature__ = inspect.Signature([first, *map(_parameter, options)])  # type: ignore[attr-defined]
    callback.__name__ = callback.__qualname__ = spec.name
    if spec.options:
        app_commands.describe(**{o.name: o.description for o in spec.options})(callback)
    completing = {o.name: completers[o.kind] for o in spec.options if o.kind in completers}
    if completing:
        app_commands.autocomplete(**completing)(callback)
    contexts = None
    if not spec.in_private_chats:
        # A channel mute or a feed thread makes no sense in a DM: not offered there at all.
        contexts = app_commands.AppCommandContext(guild=True, dm_channel=False, private_channel=False)
    command: app_commands.Command[Any, ..., None] = app_commands.Command(
        name=spec.name, description=spec.help[:100], callback=callback, allowed_contexts=contexts
    )
    command.guild_only = not spec.in_private_chats
    if spec.admin:
        command.default_permissions = discord.Permissions(manage_messages=True)
    return command


def build_tree(
    client: discord.Client, specs: Sequence[CommandSpec], run: Run, completers: Mapping[str, Complete]
) -> app_commands.CommandTree[discord.Client]:
    tree: app_commands.CommandTree[discord.Client] = app_commands.CommandTree(client)
    for spec in specs:
        tree.add_command(make_command(spec, run, completers))
    return tree


def commands_digest(tree: app_commands.CommandTree[Any]) -> str:
    payload = [c.to_dict(tree) for c in tree.get_commands()]
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _option_shape(option: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": int(option.get("type") or 0),
        "name": option.get("name"),
        "description": option.get("description") or "",
        "required": bool(option.get("required")),
        "autocomplete": bool(option.get("autocomplete")),
        "choices": [[c.get("name"), c.get("value")] for c in option.get("choices") or []],
        "options": [_option_shape(o) for o in option.get("options") or []],
    }


def command_shapes(commands: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """What users see of a command set, in one form for local definitions and Discord's copy: Discord
    leaves out false flags, gives permissions as strings and fills in the contexts left unset."""
    shapes = []
    for c in commands:
        perms = c.get("default_member_permissions")
        shapes.append(
            {
                "type": int(c.get("type") or 1),
                "name": c.get("name"),
                "description": c.get("description") or "",
                "options": [_option_shape(o) for o in c.get("options") or []],
                "default_member_permissions": str(perms) if perms is not None else None,
                "contexts": sorted(int(x) for x in c.get("contexts") or ALL_CONTEXTS),
            }
        )
    return sorted(shapes, key=lambda c: (str(c["name"]), c["type"]))


class CommandSync:
    """Sync only when the definitions changed: Discord allows few command updates per day."""

    def __init__(self, state: Path) -> None:
        self.state = state

    async def sync(self, host: discord.Client, tree: app_commands.CommandTree[discord.Client]) -> None:
        digest = commands_digest(tree)
        key = str(host.application_id)
        state = self._read()
        if state.get(key) == digest:
            log.debug("discord: slash commands unchanged, not syncing")
            return
        try:
            # A fresh container has no state file: Discord's own copy says whether anything changed.
            remote = await host.http.get_global_commands(host.application_id or 0)
            local = [c.to_dict(tree) for c in tree.get_commands()]
            if command_shapes(local) == command_shapes(cast(list[dict[str, Any]], remote)):
                log.info("discord: slash commands already up to date on Discord")
            else:
                await tree.sync()
                log.info("discord: slash commands synced")
        except (discord.DiscordException, aiohttp.ClientError, OSError) as exc:
            log.warning("discord: syncing slash commands failed: %s", exc)
            return
        state[key] = digest
        self._write(state)

    def _write(self, state: dict[str, str]) -> None:
        try:
            self.state.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.state.with_suffix(".tmp")
            tmp.write_text(json.dumps(state, indent=1))
            tmp.replace(self.state)
        except OSError as exc:
            log.warning("discord: cannot remember the command sync in %s: %s", self.state, exc)

    def _read(self) -> dict[str, str]:
        try:
            data = json.loads(self.state.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}
