"""Discord through discord.py: personas as their own bot accounts or as the host bot's webhooks.

`DiscordAdapter` implements the core's Adapter protocol and wires small parts together, each owning
its own state: `Accounts` (log-in, gateway connections), `Inbound` (gateway messages to events),
`Outbound` (replies, reactions, notices), `Webhooks`, `Channels` (channel kinds, refusals), `Feeds`
(text channel feeds), `Interactions` (slash commands) and `CommandSync`. With `shards` set, the host
bot receives through one client per gateway shard (adapters/discord/shards.py), each leased as an
account of its own, `discord:host#i/n`.

Seam for outside test harnesses: every `discord.Client` the adapter uses (senders and gateway
receivers alike) is built by `DiscordAdapter.make_client(account)`. Override it to configure or wrap
clients; the client it returns must hand `on_message` to `adapter.receive(account, message)`, as the
default `Receiver` does; a shard's client is built with `shard_id` and `shard_count`, and waits for
its identify turn in `before_identify_hook` (see `Receiver`). Streaming edits, typing refreshes and
interaction bookkeeping take their time from the fleet's `clock` and `sleep` (FleetView), so a harness
controls time there too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import discord
import discord.gateway
import discord.http
import yarl
from discord import app_commands

from adapters.discord.accounts import Accounts, Receiver
from adapters.discord.channels import Channels
from adapters.discord.common import HOST, LIMIT, PLATFORM, Tasks, default_command_state, gateway_intents, nobody
from adapters.discord.feeds import Feeds
from adapters.discord.inbound import Inbound
from adapters.discord.interactions import Interactions
from adapters.discord.outbound import Outbound
from adapters.discord.photos import DiscordPhotos
from adapters.discord.shards import IDENTIFY_INTERVAL, IdentifyTurns, SharedTurns, base_account
from adapters.discord.slash import CommandSync, Complete, build_tree
from adapters.discord.webhooks import Webhooks
from bots.config import DiscordConfig, FeedConfig
from bots.core.commands import COMMANDS
from bots.core.events import ImagePart, Notice, React, Reply, Sent
from bots.core.ports import FleetView, ImageUnavailable
from bots.persona import Persona

# How long a connect budget read from Discord is reused: leases ask often, Discord counts slowly.
BUDGET_TTL = 5.0

log = logging.getLogger("botfleet.discord")


class DiscordAdapter:
    platform = PLATFORM
    text_limit = LIMIT

    def __init__(
        self,
        config: DiscordConfig,
        personas: Sequence[Persona],
        *,
        command_state: Path | None = None,
        guild_ready_timeout: float = 2.0,
        ready_timeout: float = 30.0,
        edit_interval: float = 1.0,
        identify_interval: float = IDENTIFY_INTERVAL,
    ) -> None:
        self.config = config
        self.guild_ready_timeout = guild_ready_timeout
        self.edit_interval = edit_interval
        self._personas = {p.id: p for p in personas}
        self._fleet: FleetView | None = None
        self._budgets: dict[str, tuple[float, tuple[int, int, float]]] = {}  # account -> (read at, budget)
        self._tasks = Tasks()
        self._sync = CommandSync(command_state or config.command_state_file or default_command_state())
        self._accounts = Accounts(config, personas, self.make_client, self._tasks, ready_timeout=ready_timeout)
        self._accounts.on_host_receiver = self._command_tree
        self._turns = IdentifyTurns(interval=identify_interval, clock=self._now, sleep=self._sleep)
        self._accounts.identify_turn = self._identify_turn
        self._channels = Channels(self._accounts, self._now)
        self._webhooks = Webhooks(self._accounts)
        self._feeds = Feeds(self._feed_configs, self._accounts, self._channels)
        self._inbound = Inbound(
            config, self._accounts, self._webhooks, self._channels, self._feeds, self._fleet_view, self._all_personas
        )
        self._outbound = Outbound(
            config,
            self._accounts,
            self._webhooks,
            self._channels,
            self._feeds,
            edit_interval=edit_interval,
            clock=self._now,
            sleep=self._sleep,
        )
        self._interactions = Interactions(self._fleet_view, self._named, self._tasks, self._now)
        self._photos: DiscordPhotos | None = None

    @property
    def command_state(self) -> Path:
        return self._sync.state

    @property
    def failed(self) -> dict[str, str]:
        """Accounts whose token Discord refused, with the reason."""
        return self._accounts.failed

    # --- the seam -----------------------------------------------------------------------------------

    def make_client(self, account: str) -> discord.Client:
        """Build the discord.py client for one account (`discord:host`, `discord:<persona id>`)."""
        # Personas never join voice: discord.py's warnings about missing voice libraries are noise.
        discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False
        shard = self._accounts.shard_of(account)
        sharding: dict[str, Any] = {"shard_id": shard[0], "shard_count": shard[1]} if shard else {}
        return Receiver(
            self.receive,
            account,
            turn=self._identify_turn,
            **sharding,
            intents=gateway_intents(),
            allowed_mentions=nobody(),
            max_messages=None,
            chunk_guilds_at_startup=False,
            guild_ready_timeout=self.guild_ready_timeout,
        )

    async def receive(self, account: str, message: discord.Message) -> None:
        """A gateway message seen by one of our accounts (a shard's messages are the host account's)."""
        await self._inbound.receive(base_account(account), message)

    # --- lifecycle ----------------------------------------------------------------------------------

    def _point_discord_py(self) -> None:
        # Class attributes, so process-wide: one fleet talks to one Discord (or one proxy).
        if self.config.api_base_url:
            discord.http.Route.BASE = self.config.api_base_url.rstrip("/")
        if self.config.gateway_url:
            discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.config.gateway_url)

    async def start(self, fleet: FleetView) -> None:
        self._fleet = fleet
        self._photos = DiscordPhotos(self.config, fleet.config.llm)
        self._point_discord_py()
        await self._accounts.login_all()
        host = self._accounts.host()
        if host is not None:
            self._inbound.app_id = host.application_id
            await self._sync.sync(host, self._command_tree(host))
            await self._plan_shards()
        self._accounts.report(self._personas)

    async def _plan_shards(self) -> None:
        want = self.config.shards
        if want == 1:
            return
        got = await self._accounts.host_gateway()
        if got is not None:
            self._turns.max_concurrency = got[1]
        count = want if isinstance(want, int) else (got[0] if got is not None else 1)
        self._accounts.shard_host(count)
        if count > 1:
            log.info(
                "discord: the host bot receives as %d shards (identify buckets: %d)", count, self._turns.max_concurrency
            )
        elif got is None:
            log.warning("discord: shards: auto, but the recommended count could not be read; running unsharded")

    def share_identify_turns(self, shared: SharedTurns) -> None:
        """Offered by the lease manager: identify turns taken across every process on the same Redis."""
        self._turns.shared = shared

    async def _identify_turn(self, shard_id: int) -> None:
        await self._turns.wait(HOST, shard_id)

    def accounts(self) -> list[str]:
        # Every configured account, logged in or not (the host's shards in its place when it is sharded):
        # processes sharing leases must agree on the set.
        return self._accounts.receiving()

    async def connect(self, account: str) -> bool:
        # A connect spends one IDENTIFY: the budget read before it is stale.
        self._budgets.pop(base_account(account), None)
        return await self._accounts.connect(account)

    async def connect_budget(self, account: str) -> tuple[int, int, float] | None:
        """(remaining, total, seconds until reset) gateway connects Discord allows the account now, read
        briefly cached; None when it cannot be read. The lease manager keeps a reserve of them."""
        # The shards of one token share its budget.
        key = base_account(account)
        cached = self._budgets.get(key)
        if cached is not None and self._now() - cached[0] < BUDGET_TTL:
            return cached[1]
        budget = await self._accounts.connect_budget(account)
        if budget is not None:
            self._budgets[key] = (self._now(), budget)
        return budget

    async def disconnect(self, account: str) -> None:
        await self._accounts.disconnect(account)

    async def stop(self) -> None:
        await self._tasks.cancel_all()
        await self._accounts.close_all()
        await self._webhooks.close()
        if self._photos is not None:
            await self._photos.close()

    async def image_url(self, part: ImagePart, max_side: int) -> str:
        """A photo this adapter received, as a data URL (the core's ImageSource)."""
        if self._photos is None:
            raise ImageUnavailable("not_started")
        return await self._photos.image_url(part, max_side)

    # --- the fleet ----------------------------------------------------------------------------------

    def _fleet_view(self) -> FleetView | None:
        return self._fleet

    def _now(self) -> float:
        return self._fleet.clock() if self._fleet is not None else time.monotonic()

    async def _sleep(self, seconds: float) -> None:
        if self._fleet is not None:
            await self._fleet.sleep(seconds)
        else:
            await asyncio.sleep(seconds)

    def _feed_configs(self) -> Sequence[FeedConfig]:
        # The fleet's config is swapped on reload: read at each use, a new feed applies at once.
        return self._fleet.config.feeds.discord if self._fleet is not None else ()

    def _all_personas(self) -> list[Persona]:
        # The fleet's set can be reloaded while running; the constructor's is the fallback.
        return list((self._fleet.personas if self._fleet is not None else self._personas).values())

    def _named(self, value: str) -> Persona | None:
        key = value.strip().lower()
        return next((p for p in self._all_personas() if key and key in (p.id, p.name.lower())), None)

    # --- slash commands -----------------------------------------------------------------------------

    def _command_tree(self, client: discord.Client) -> app_commands.CommandTree[discord.Client]:
        completers: dict[str, Complete] = {"persona": self._complete_persona, "personas": self._complete_personas}
        return build_tree(client, list(COMMANDS.values()), self._interactions.run, completers)

    async def _complete_persona(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        return [app_commands.Choice(name=p.name[:100], value=p.id) for p in self._matching(current)]

    async def _complete_personas(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        # Several ids in one option: complete the word being typed, keep the ones before it.
        head, _, last = current.replace(",", " ").rpartition(" ")
        prefix = f"{head.strip()} " if head.strip() else ""
        return [
            app_commands.Choice(name=f"{prefix}{p.id}"[:100], value=f"{prefix}{p.id}"[:100])
            for p in self._matching(last)
        ]

    def _matching(self, current: str) -> list[Persona]:
        key = current.strip().lower()
        return [p for p in self._all_personas() if key in p.id or key in p.name.lower()][:25]

    # --- sending ------------------------------------------------------------------------------------

    async def deliver(self, reply: Reply, persona: Persona, snapshots: AsyncIterator[str]) -> Sent:
        await self._interactions.intro_first(reply.reply_to)
        return await self._outbound.deliver(reply, persona, snapshots)

    async def react(self, react: React, persona: Persona) -> None:
        await self._outbound.react(react, persona)

    async def notify(self, notice: Notice) -> None:
        if not await self._interactions.answer(notice):
            await self._outbound.notify(notice)
