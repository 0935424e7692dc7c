"""The Discord accounts of a fleet: the host bot and personas with tokens of their own.

Every account gets two clients in the fleet's event loop: a *sender*, logged in at start-up (REST
only, so any process can post as any account), and a *receiver*, whose gateway connection is opened
by `connect` and closed by `disconnect` as the fleet's account leases come and go. Nothing here runs
`Client.run()`: that would take the loop over.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import discord

from adapters.discord.common import HOST, PLATFORM, Tasks
from adapters.discord.shards import shard_name
from bots.config import DiscordConfig
from bots.persona import Persona

log = logging.getLogger("botfleet.discord")

MessageHandler = Callable[[str, discord.Message], Awaitable[None]]


@dataclass
class Account:
    name: str  # "discord:host" or "discord:<persona id>"
    token: str
    persona_id: str | None = None
    sender: discord.Client | None = None
    receiver: discord.Client | None = None
    gateway: asyncio.Task[None] | None = None
    user_id: int | None = None
    error: str = ""
    shard: tuple[int, int] | None = None  # (shard id, shard count): one gateway shard of the host's token


class Receiver(discord.Client):
    """A client that hands gateway messages to the adapter (a sender never opens the gateway).

    A shard's receiver waits for its identify turn (`turn`, given the shard id) before each IDENTIFY
    after a reconnect; the first one's turn is taken by `Accounts.connect` before the ready timeout runs.
    """

    def __init__(
        self,
        handler: MessageHandler,
        account: str,
        *,
        turn: Callable[[int], Awaitable[None]] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self._handler = handler
        self._account = account
        self._turn = turn

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        if shard_id is None or self._turn is None:
            await super().before_identify_hook(shard_id, initial=initial)
        elif not initial:
            await self._turn(shard_id)

    async def on_message(self, message: discord.Message) -> None:
        try:
            await self._handler(self._account, message)
        except Exception:
            log.exception("discord: handling message %s failed", message.id)


def plan_accounts(config: DiscordConfig, personas: Sequence[Persona]) -> dict[str, Account]:
    accounts: dict[str, Account] = {}
    tokens: dict[str, str] = {}
    if config.token:
        accounts[HOST] = Account(HOST, config.token)
        tokens[config.token] = HOST
    for p in personas:
        token = p.platforms.discord.token if p.platforms.discord else ""
        if not token:
            continue
        if token in tokens:
            log.warning("discord: %s uses the same token as %s; it speaks through webhooks", p.id, tokens[token])
            continue
        name = f"{PLATFORM}:{p.id}"
        accounts[name] = Account(name, token, persona_id=p.id)
        tokens[token] = name
    return accounts


def _gateway_problem(task: asyncio.Task[None]) -> str:
    if not task.done():
        return "timed out waiting for READY"
    exc = task.exception() if not task.cancelled() else None
    if isinstance(exc, discord.PrivilegedIntentsRequired):
        return "the Message Content intent is off: turn it on in the developer portal (Bot → Privileged Intents)"
    if isinstance(exc, discord.ConnectionClosed) and exc.code == 4004:
        return "token rejected by the gateway (4004)"
    if isinstance(exc, discord.ConnectionClosed) and exc.code == 4011:
        return "Discord requires sharding for this bot (4011): set adapters.discord.shards to auto or a number"
    if isinstance(exc, discord.ConnectionClosed) and exc.code == 4010:
        return "Discord refused the shard (4010): adapters.discord.shards does not fit this bot"
    return repr(exc) if exc else "closed"


def _token_refused(task: asyncio.Task[None]) -> bool:
    exc = task.exception() if task.done() and not task.cancelled() else None
    return isinstance(exc, discord.ConnectionClosed) and exc.code == 4004


class Accounts:
    """Logging in, connecting and disconnecting; which account is whose."""

    def __init__(
        self,
        config: DiscordConfig,
        personas: Sequence[Persona],
        make_client: Callable[[str], discord.Client],
        tasks: Tasks,
        *,
        ready_timeout: float,
    ) -> None:
        self.by_name = plan_accounts(config, personas)
        # The host's gateway shards when it runs sharded: each receives as an account of its own.
        self.shards: dict[str, Account] = {}
        # Waits for a shard's identify turn (adapters/discord/shards.py): set by the adapter.
        self.identify_turn: Callable[[int], Awaitable[None]] | None = None
        # Accounts whose token Discord refused, with the reason: reported at start-up.
        self.failed: dict[str, str] = {}
        self.bot_ids: set[int] = set()
        self.persona_of_user: dict[int, str] = {}
        self._make_client = make_client
        self._tasks = tasks
        self._ready_timeout = ready_timeout
        # Called with the host's receiver before it logs in (the slash command tree hangs on it).
        self.on_host_receiver: Callable[[discord.Client], object] = lambda client: None

    def host(self) -> discord.Client | None:
        host = self.by_name.get(HOST)
        return host.sender if host is not None else None

    def any_sender(self) -> discord.Client | None:
        return self.host() or next((a.sender for a in self.by_name.values() if a.sender), None)

    def shard_host(self, count: int) -> None:
        """Receive on the host's token as `count` shards (`discord:host#i/count`) instead of one session."""
        host = self.by_name.get(HOST)
        if host is None or count <= 1:
            self.shards = {}
            return
        self.shards = {
            shard_name(i, count): Account(shard_name(i, count), host.token, shard=(i, count)) for i in range(count)
        }

    def receiving(self) -> list[str]:
        """The accounts that receive: the host's shards in place of the host when it is sharded."""
        if not self.shards:
            return list(self.by_name)
        return [*self.shards, *(name for name in self.by_name if name != HOST)]

    def shard_of(self, account: str) -> tuple[int, int] | None:
        acct = self.shards.get(account)
        return acct.shard if acct is not None else None

    def _get(self, account: str) -> Account | None:
        return self.by_name.get(account) or self.shards.get(account)

    def _owner(self, acct: Account) -> Account:
        """The account whose token and sender a shard uses (the host); any other account itself."""
        return self.by_name.get(HOST, acct) if acct.shard is not None else acct

    async def host_gateway(self) -> tuple[int, int] | None:
        """(recommended shard count, max_concurrency) from the host's ``GET /gateway/bot``; None when
        there is no logged-in host or asking fails."""
        host = self.host()
        if host is None:
            return None
        try:
            shards, _, limit = await host.http.get_bot_gateway()
            return int(shards), int(limit.get("max_concurrency") or 1)
        except (discord.DiscordException, aiohttp.ClientError, OSError, KeyError, TypeError, ValueError) as exc:
            log.warning("discord: could not read the host's shard count: %s", exc)
            return None

    def own(self, persona_id: str) -> Account | None:
        acct = self.by_name.get(f"{PLATFORM}:{persona_id}")
        return acct if acct is not None and acct.sender is not None else None

    def persona_id(self, account: str) -> str | None:
        acct = self.by_name.get(account)
        return acct.persona_id if acct is not None else None

    async def connect_budget(self, account: str) -> tuple[int, int, float] | None:
        """(remaining, total, seconds until the window resets) of the IDENTIFYs Discord allows the
        account's token (``GET /gateway/bot`` ``session_start_limit``); None for an account without a
        working token or when asking fails."""
        acct = self._get(account)
        sender = self._owner(acct).sender if acct is not None else None
        if sender is None:
            return None
        try:
            _, _, limit = await sender.http.get_bot_gateway()
            # reset_after is in milliseconds.
            return int(limit["remaining"]), int(limit["total"]), float(limit["reset_after"]) / 1000
        except (discord.DiscordException, aiohttp.ClientError, OSError, KeyError, TypeError, ValueError) as exc:
            log.warning("discord: could not read %s's connect budget: %s", account, exc)
            return None

    async def login_all(self) -> None:
        await asyncio.gather(*(self._login(a) for a in self.by_name.values()))
        for a in self.by_name.values():
            if a.sender is not None and a.user_id is not None:
                self.bot_ids.add(a.user_id)
                if a.persona_id:
                    self.persona_of_user[a.user_id] = a.persona_id

    async def _login(self, account: Account) -> None:
        client = self._make_client(account.name)
        try:
            await client.login(account.token)
        except discord.LoginFailure:
            account.error = "token rejected by Discord (401)"
        except (discord.HTTPException, aiohttp.ClientError, OSError) as exc:
            account.error = f"login failed: {exc}"
        if account.error:
            self.failed[account.name] = account.error
            await client.close()
            return
        account.sender = client
        account.user_id = client.user.id if client.user else None

    def report(self, persona_ids: Iterable[str]) -> None:
        for name, reason in self.failed.items():
            if name == HOST:
                log.error(
                    "discord: host bot (adapters.discord.token): %s; no slash commands, no webhook personas", reason
                )
            else:
                log.error("discord: %s: %s; it speaks through the host's webhooks instead", name, reason)
        self._report_voices(persona_ids)

    def _report_voices(self, persona_ids: Iterable[str]) -> None:
        own = sorted(a.persona_id for a in self.by_name.values() if a.persona_id and a.sender)
        hooked = sorted(p for p in persona_ids if p not in own)
        if hooked and self.host() is None:
            log.error("discord: no host bot, so %s cannot speak on Discord", ", ".join(hooked))
        log.info(
            "discord: own accounts: %s; through webhooks: %s", ", ".join(own) or "none", ", ".join(hooked) or "none"
        )

    async def connect(self, account: str) -> bool:
        acct = self._get(account)
        if acct is None or self._owner(acct).sender is None:
            # A refused token was reported at start-up; asking Discord again would only count against us.
            log.debug("discord: not connecting %s: %s", account, acct.error if acct else "unknown account")
            return False
        if acct.receiver is not None:
            return True
        client = self._make_client(account)
        if acct.persona_id is None:
            self.on_host_receiver(client)
        if not await self._receiver_login(acct, client):
            return False
        if acct.shard is not None and self.identify_turn is not None:
            # Waiting for the turn may take a while with many shards: not part of the ready timeout.
            try:
                await self.identify_turn(acct.shard[0])
            except BaseException:
                await client.close()
                raise
        gateway = asyncio.create_task(client.connect(reconnect=True), name=f"gateway {account}")
        ready = asyncio.ensure_future(client.wait_until_ready())
        await asyncio.wait({gateway, ready}, timeout=self._ready_timeout, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            ready.cancel()
            await client.close()
            await asyncio.wait([gateway])
            if _token_refused(gateway):
                await self.revoke(acct, _gateway_problem(gateway))
            else:
                log.error("discord: %s did not connect: %s", account, _gateway_problem(gateway))
            return False
        acct.receiver, acct.gateway = client, gateway
        gateway.add_done_callback(lambda task: self._gateway_ended(acct, client, task))
        return True

    async def _receiver_login(self, acct: Account, client: discord.Client) -> bool:
        try:
            await client.login(acct.token)
        except discord.LoginFailure:
            await client.close()
            await self.revoke(acct, "token rejected by Discord (401)")
            return False
        except (discord.HTTPException, aiohttp.ClientError, OSError) as exc:
            log.error("discord: %s could not log in: %s", acct.name, exc)
            await client.close()
            return False
        return True

    async def revoke(self, acct: Account, reason: str) -> None:
        """Discord refused the token after start-up: report it, and neither send nor connect with it again
        (each try would count against us). Its persona speaks through the host's webhooks instead."""
        acct = self._owner(acct)
        acct.error = reason
        if acct.name not in self.failed:
            self.failed[acct.name] = reason
            log.error("discord: %s: %s; it stays offline until restarted with a valid token", acct.name, reason)
        sender, acct.sender = acct.sender, None
        if sender is not None:
            await sender.close()

    def _gateway_ended(self, acct: Account, client: discord.Client, task: asyncio.Task[None]) -> None:
        # After `disconnect` the account no longer points at this client: only an unasked end is news.
        if acct.receiver is not client:
            return
        acct.receiver, acct.gateway = None, None
        self._tasks.spawn(client.close())
        if _token_refused(task):
            self._tasks.spawn(self.revoke(acct, _gateway_problem(task)))
            return
        log.error("discord: %s lost its gateway: %s", acct.name, _gateway_problem(task))

    async def disconnect(self, account: str) -> None:
        acct = self._get(account)
        if acct is None or acct.receiver is None:
            return
        client, gateway = acct.receiver, acct.gateway
        acct.receiver, acct.gateway = None, None
        await client.close()
        if gateway is not None:
            await asyncio.wait([gateway], timeout=5)

    async def close_all(self) -> None:
        for shard in self.shards.values():
            await self.disconnect(shard.name)
        for acct in self.by_name.values():
            await self.disconnect(acct.name)
            if acct.sender is not None:
                await acct.sender.close()
                acct.sender = None
