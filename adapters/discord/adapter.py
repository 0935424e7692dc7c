"""Discord through discord.py: personas as their own bot accounts or as the host bot's webhooks.

Every account gets two clients in the fleet's event loop: a *sender*, logged in at start-up (REST
only, so any process can post as any account), and a *receiver*, whose gateway connection is opened
by `connect` and closed by `disconnect` as the fleet's account leases come and go. Nothing here runs
`Client.run()`: that would take the loop over.

Personas without a token of their own speak through one webhook per channel that the host bot creates
and caches, with their name and avatar on each message; the host reacts and types for them. Every
message the fleet sends is fed back into the conversation by the core, so the gateway echoes of our
own accounts and webhooks are dropped here.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

import aiohttp
import discord
import discord.gateway
import discord.http
import yarl
from discord import app_commands

from bots.config import DiscordConfig, FeedConfig
from bots.core.brain import IncompleteReply
from bots.core.commands import COMMANDS
from bots.core.events import Author, Command, Message, Notice, React, Reply, Sent
from bots.core.ports import FleetView
from bots.core.text import split_text
from bots.persona import Persona

log = logging.getLogger("botfleet.discord")

PLATFORM = "discord"
LIMIT = 2000
HOST = f"{PLATFORM}:host"
HOOK_NAME = "botfleet"
CUT_MARK = "… *(reply cut off)*"
# Discord shows "typing…" for about 10 s after each call.
TYPING_REFRESH = 8.0
# A channel that refused us (403) is left alone this long before one more try.
DENIED_SECONDS = 900.0
# Interaction tokens live 15 minutes; follow-ups after that fail.
INTERACTION_SECONDS = 14 * 60.0
# How long a deferred interaction may wait for the core's answer before it is closed off.
SETTLE_SECONDS = 5.0
UNKNOWN_WEBHOOK = 10015
THREAD_EXISTS = 160004
ARCHIVE_MINUTES = 1440
# Answers that only the person who ran the command should see; deferring decides it up front.
PRIVATE_COMMANDS = frozenset({"optout", "optin", "forget", "help", "followers", "more"})
OPTED_OUT = "You opted out, so the personas won't answer you. /optin to change that."


def nobody(replied_user: bool = False) -> discord.AllowedMentions:
    # discord.py's default allows every ping, and webhooks do not inherit a client's setting.
    return discord.AllowedMentions(everyone=False, users=False, roles=False, replied_user=replied_user)


def webhook_username(name: str, fallback: str = "Persona") -> str:
    """A name Discord accepts on a webhook message: no "clyde" or "discord", 1-80 characters."""
    out = name.strip() or fallback
    for banned in ("clyde", "discord"):
        out = re.sub(banned, lambda m: f"{m.group(0)[:3]}-{m.group(0)[3:]}", out, flags=re.IGNORECASE)
    return out[:80]


def thread_title(text: str) -> str:
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "") or "Post"
    return line if len(line) <= 90 else line[:89] + "…"


def default_command_state() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "botfleet" / "discord-commands.json"


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
    leaves out false flags and gives permissions as strings."""
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
            }
        )
    return sorted(shapes, key=lambda c: (str(c["name"]), c["type"]))


def gateway_intents() -> discord.Intents:
    intents = discord.Intents.default()
    # Privileged: without it guild messages arrive empty unless they mention the receiving bot.
    intents.message_content = True
    return intents


def _snowflake(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


class _Bounded(OrderedDict[Any, Any]):
    """A dict that forgets its oldest entries past `size`."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


@dataclass
class _Account:
    name: str  # "discord:host" or "discord:<persona id>"
    token: str
    persona_id: str | None = None
    sender: discord.Client | None = None
    receiver: discord.Client | None = None
    gateway: asyncio.Task[None] | None = None
    user_id: int | None = None
    error: str = ""


@dataclass(frozen=True, slots=True)
class _Where:
    """What the adapter knows about a channel: threads post through their parent's webhook."""

    kind: str  # text | thread | forum | dm | other
    parent: int | None = None
    name: str = ""
    account: str | None = None  # for a DM: the account it is with, once a message there was seen


@dataclass
class _FeedPost:
    """A post in a text channel feed. Its thread is opened when the first comment is ready, so a post
    nobody answers (its author opted out, everyone is resting) gets no empty thread."""

    parent: int
    title: str
    opened: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass
class _Pending:
    interaction: discord.Interaction[Any]
    at: float
    private: bool = False  # deferred ephemerally: the first follow-up is private whatever it asks
    answered: bool = False


class _Receiver(discord.Client):
    """A gateway connection that hands messages to the adapter."""

    def __init__(self, adapter: DiscordAdapter, account: str, **options: Any) -> None:
        super().__init__(**options)
        self._adapter = adapter
        self._account = account

    async def on_message(self, message: discord.Message) -> None:
        try:
            await self._adapter.receive(self._account, message)
        except Exception:
            log.exception("discord: handling message %s failed", message.id)


class _Target(Protocol):
    """Where one reply goes: an account's channel, or a channel's webhook under a persona's name."""

    key: tuple[str, int]  # (account, channel) for permission bookkeeping
    # The key whose refusal also silences this target: a thread's parent, whose webhook it posts through.
    scope: tuple[str, int]
    limit: int

    async def typing(self) -> None: ...

    async def prepare(self) -> None:
        """Get what posting needs (a webhook), so a refusal shows before the LLM is paid for."""
        ...

    async def post(self, text: str, first: bool) -> int: ...

    async def edit(self, message_id: int, text: str) -> None: ...

    async def delete(self, message_id: int) -> None: ...


class _AccountTarget:
    def __init__(
        self,
        account: str,
        client: discord.Client,
        channel: int,
        reference: discord.MessageReference | None,
        mentions: discord.AllowedMentions,
    ) -> None:
        self.key = self.scope = (account, channel)
        self.limit = LIMIT
        self._client = client
        self._channel = client.get_partial_messageable(channel)
        self._reference = reference
        self._mentions = mentions

    async def typing(self) -> None:
        await self._client.http.send_typing(self._channel.id)

    async def prepare(self) -> None:
        return None

    async def post(self, text: str, first: bool) -> int:
        reference = self._reference if first else None
        sent = await self._channel.send(text, reference=reference, allowed_mentions=self._mentions)  # type: ignore[arg-type]
        return sent.id

    async def edit(self, message_id: int, text: str) -> None:
        await self._channel.get_partial_message(message_id).edit(content=text, allowed_mentions=self._mentions)

    async def delete(self, message_id: int) -> None:
        await self._channel.get_partial_message(message_id).delete()


class _WebhookTarget:
    """Webhooks cannot reply, so a reply to someone opens with a small line naming them."""

    def __init__(
        self,
        adapter: DiscordAdapter,
        host: discord.Client,
        channel: int,
        where: _Where,
        username: str,
        avatar: str | None,
        mentions: discord.AllowedMentions,
        header: str,
    ) -> None:
        self.key = (HOST, channel)
        self.limit = LIMIT - (len(header) + 1 if header else 0)
        self._adapter = adapter
        self._host = host
        self._channel = channel
        self._parent = where.parent if where.kind == "thread" and where.parent else channel
        self._thread = discord.Object(channel) if self._parent != channel else None
        self.scope = (HOST, self._parent)
        self._username = username
        self._avatar = avatar
        self._mentions = mentions
        self._header = header
        self._first: int | None = None

    def _content(self, text: str, first: bool) -> str:
        return f"{self._header}\n{text}" if first and self._header else text

    async def typing(self) -> None:
        await self._host.http.send_typing(self._channel)

    async def prepare(self) -> None:
        await self._adapter.webhook(self._parent)

    async def post(self, text: str, first: bool) -> int:
        content = self._content(text, first)
        sent = await self._adapter.webhook_send(
            self._parent, self._thread, content, self._username, self._avatar, self._mentions
        )
        if first:
            self._first = sent.id
        return sent.id

    async def edit(self, message_id: int, text: str) -> None:
        hook = await self._adapter.webhook(self._parent)
        content = self._content(text, message_id == self._first)
        thread = self._thread or discord.utils.MISSING
        await hook.edit_message(message_id, content=content, allowed_mentions=self._mentions, thread=thread)

    async def delete(self, message_id: int) -> None:
        hook = await self._adapter.webhook(self._parent)
        await hook.delete_message(message_id, thread=self._thread or discord.utils.MISSING)


class _DMTarget(_AccountTarget):
    """A webhook persona answering in the host's DMs, where there are no webhooks: name in bold."""

    def __init__(self, client: discord.Client, channel: int, name: str) -> None:
        super().__init__(HOST, client, channel, None, nobody())
        self._prefix = f"**{name}:** "
        self.limit = LIMIT - len(self._prefix)

    async def post(self, text: str, first: bool) -> int:
        return await super().post(self._prefix + text, first)

    async def edit(self, message_id: int, text: str) -> None:
        await super().edit(message_id, self._prefix + text)


class _Live:
    """The message a streamed reply is written into.

    The first write waits `interval`, so a reply that finishes quickly goes out whole in one message;
    after that the message is edited at most once per `interval`, whatever the token rate.
    """

    def __init__(self, target: _Target, interval: float, posted: Callable[[], None]) -> None:
        self.target = target
        self.interval = interval
        self.latest = ""
        self.shown = ""
        self.message_id: int | None = None
        self.error: BaseException | None = None
        self._posted = posted
        self._last = 0.0
        self._wake = asyncio.Event()
        self._writing = False
        self._stopping = False
        self._task = asyncio.ensure_future(self._run())

    def update(self, text: str) -> None:
        self.latest = text
        self._wake.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await asyncio.sleep(self.interval)
            while not self._stopping:
                await self._wake.wait()
                self._wake.clear()
                text = self.latest
                if not text or text == self.shown:
                    continue
                self._writing = True
                try:
                    if self.message_id is None:
                        self.message_id = await self.target.post(text, first=True)
                        self._posted()
                    else:
                        await self.target.edit(self.message_id, text)
                finally:
                    self._writing = False
                self.shown = text
                self._last = loop.time()
                if self._stopping:
                    return
                await asyncio.sleep(self.interval)
        except Exception as exc:
            # Kept for the writer of the reply, which decides what a failure means.
            self.error = exc

    async def stop(self) -> None:
        """Stop writing. A write in flight finishes first: cancelling it could land it after the final edit."""
        self._stopping = True
        if not self._writing:
            self._task.cancel()
        await asyncio.wait([self._task])

    def abandon(self) -> None:
        """Last resort after the reply failed: no further writes, whatever state they are in."""
        self._task.cancel()

    async def pace(self) -> None:
        """Wait until the next write keeps to one per interval."""
        loop = asyncio.get_running_loop()
        await asyncio.sleep(max(0.0, self._last + self.interval - loop.time()))


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
    ) -> None:
        self.config = config
        self.command_state = command_state or config.command_state_file or default_command_state()
        self.guild_ready_timeout = guild_ready_timeout
        self.ready_timeout = ready_timeout
        self.edit_interval = edit_interval
        self._personas = {p.id: p for p in personas}
        self._accounts = self._plan_accounts(config, personas)
        # Accounts whose token Discord refused, with the reason: reported at start-up.
        self.failed: dict[str, str] = {}
        self._fleet: FleetView | None = None
        self._feeds: tuple[FeedConfig, ...] = ()
        self._persona_of_user: dict[int, str] = {}
        self._bot_ids: set[int] = set()
        self._app_id: int | None = None
        self._hooks: dict[int, discord.Webhook] = {}
        self._hook_locks: dict[int, asyncio.Lock] = {}
        self._our_hooks: set[int] = set()
        self._hook_verdicts: _Bounded = _Bounded(2000)
        self._where: _Bounded = _Bounded(5000)
        self._seen: _Bounded = _Bounded(5000)
        self._feed_posts: _Bounded = _Bounded(1000)
        self._denied: dict[tuple[str, int], float] = {}
        self._denial_logged: set[tuple[str, int]] = set()
        self._welcome: _Bounded = _Bounded(5000)
        self._probe_locks: dict[tuple[str, int], asyncio.Lock] = {}
        self._pending: dict[str, _Pending] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    @staticmethod
    def _plan_accounts(config: DiscordConfig, personas: Sequence[Persona]) -> dict[str, _Account]:
        accounts: dict[str, _Account] = {}
        tokens: dict[str, str] = {}
        if config.token:
            accounts[HOST] = _Account(HOST, config.token)
            tokens[config.token] = HOST
        for p in personas:
            token = p.platforms.discord.token if p.platforms.discord else ""
            if not token:
                continue
            if token in tokens:
                log.warning("discord: %s uses the same token as %s; it speaks through webhooks", p.id, tokens[token])
                continue
            name = f"{PLATFORM}:{p.id}"
            accounts[name] = _Account(name, token, persona_id=p.id)
            tokens[token] = name
        return accounts

    # --- lifecycle ----------------------------------------------------------------------------------

    def _client(self, account: str | None = None) -> discord.Client:
        # Personas never join voice: discord.py's warnings about missing voice libraries are noise.
        discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False
        options: dict[str, Any] = {
            "intents": gateway_intents(),
            "allowed_mentions": nobody(),
            "max_messages": None,
            "chunk_guilds_at_startup": False,
            "guild_ready_timeout": self.guild_ready_timeout,
        }
        if account is None:
            return discord.Client(**options)
        return _Receiver(self, account, **options)

    def _point_discord_py(self) -> None:
        # Class attributes, so process-wide: one fleet talks to one Discord (or one proxy).
        if self.config.api_base_url:
            discord.http.Route.BASE = self.config.api_base_url.rstrip("/")
        if self.config.gateway_url:
            discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.config.gateway_url)

    async def start(self, fleet: FleetView) -> None:
        self._fleet = fleet
        self._feeds = fleet.config.feeds.discord
        self._point_discord_py()
        await asyncio.gather(*(self._login(a) for a in self._accounts.values()))
        for a in self._accounts.values():
            if a.sender is not None and a.user_id is not None:
                self._bot_ids.add(a.user_id)
                if a.persona_id:
                    self._persona_of_user[a.user_id] = a.persona_id
        host = self._host()
        if host is not None:
            self._app_id = host.application_id
            await self._sync_commands(host)
        self._report()

    async def _login(self, account: _Account) -> None:
        client = self._client()
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

    def _report(self) -> None:
        for name, reason in self.failed.items():
            if name == HOST:
                log.error(
                    "discord: host bot (adapters.discord.token): %s; no slash commands, no webhook personas", reason
                )
            else:
                log.error("discord: %s: %s; it speaks through the host's webhooks instead", name, reason)
        own = sorted(a.persona_id for a in self._accounts.values() if a.persona_id and a.sender)
        hooked = sorted(p for p in self._personas if p not in own)
        if hooked and self._host() is None:
            log.error("discord: no host bot, so %s cannot speak on Discord", ", ".join(hooked))
        log.info(
            "discord: own accounts: %s; through webhooks: %s", ", ".join(own) or "none", ", ".join(hooked) or "none"
        )

    def accounts(self) -> list[str]:
        # Every configured account, logged in or not: processes sharing leases must agree on the set.
        return list(self._accounts)

    async def connect(self, account: str) -> bool:
        acct = self._accounts.get(account)
        if acct is None or acct.sender is None:
            # A refused token was reported at start-up; asking Discord again would only count against us.
            log.debug("discord: not connecting %s: %s", account, acct.error if acct else "unknown account")
            return False
        if acct.receiver is not None:
            return True
        client = self._client(account)
        if acct.persona_id is None:
            self._command_tree(client)
        try:
            await client.login(acct.token)
        except discord.LoginFailure:
            await client.close()
            await self._revoke(acct, "token rejected by Discord (401)")
            return False
        except (discord.HTTPException, aiohttp.ClientError, OSError) as exc:
            log.error("discord: %s could not log in: %s", account, exc)
            await client.close()
            return False
        gateway = asyncio.create_task(client.connect(reconnect=True), name=f"gateway {account}")
        ready = asyncio.ensure_future(client.wait_until_ready())
        await asyncio.wait({gateway, ready}, timeout=self.ready_timeout, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            ready.cancel()
            await client.close()
            await asyncio.wait([gateway])
            if self._token_refused(gateway):
                await self._revoke(acct, self._gateway_problem(gateway))
            else:
                log.error("discord: %s did not connect: %s", account, self._gateway_problem(gateway))
            return False
        acct.receiver, acct.gateway = client, gateway
        gateway.add_done_callback(lambda task: self._gateway_ended(acct, client, task))
        return True

    @staticmethod
    def _gateway_problem(task: asyncio.Task[None]) -> str:
        if not task.done():
            return "timed out waiting for READY"
        exc = task.exception() if not task.cancelled() else None
        if isinstance(exc, discord.PrivilegedIntentsRequired):
            return "the Message Content intent is off: turn it on in the developer portal (Bot → Privileged Intents)"
        if isinstance(exc, discord.ConnectionClosed) and exc.code == 4004:
            return "token rejected by the gateway (4004)"
        return repr(exc) if exc else "closed"

    @staticmethod
    def _token_refused(task: asyncio.Task[None]) -> bool:
        exc = task.exception() if task.done() and not task.cancelled() else None
        return isinstance(exc, discord.ConnectionClosed) and exc.code == 4004

    async def _revoke(self, acct: _Account, reason: str) -> None:
        """Discord refused the token after start-up: report it, and neither send nor connect with it again
        (each try would count against us). Its persona speaks through the host's webhooks instead."""
        acct.error = reason
        if acct.name not in self.failed:
            self.failed[acct.name] = reason
            log.error("discord: %s: %s; it stays offline until restarted with a valid token", acct.name, reason)
        sender, acct.sender = acct.sender, None
        if sender is not None:
            await sender.close()

    def _gateway_ended(self, acct: _Account, client: discord.Client, task: asyncio.Task[None]) -> None:
        # After `disconnect` the account no longer points at this client: only an unasked end is news.
        if acct.receiver is not client:
            return
        acct.receiver, acct.gateway = None, None
        self._spawn(client.close())
        if self._token_refused(task):
            self._spawn(self._revoke(acct, self._gateway_problem(task)))
            return
        log.error("discord: %s lost its gateway: %s", acct.name, self._gateway_problem(task))

    async def disconnect(self, account: str) -> None:
        acct = self._accounts.get(account)
        if acct is None or acct.receiver is None:
            return
        client, gateway = acct.receiver, acct.gateway
        acct.receiver, acct.gateway = None, None
        await client.close()
        if gateway is not None:
            await asyncio.wait([gateway], timeout=5)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for acct in self._accounts.values():
            await self.disconnect(acct.name)
            if acct.sender is not None:
                await acct.sender.close()
                acct.sender = None

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _host(self) -> discord.Client | None:
        host = self._accounts.get(HOST)
        return host.sender if host is not None else None

    def _own(self, persona_id: str) -> _Account | None:
        acct = self._accounts.get(f"{PLATFORM}:{persona_id}")
        return acct if acct is not None and acct.sender is not None else None

    def _may_write(self, account: str, channel_id: int) -> bool:
        """False for another account's DM (the host's, say): only that account can write there."""
        where = self._where.get(channel_id)
        return where is None or where.kind != "dm" or where.account in (None, account)

    def _all_personas(self) -> list[Persona]:
        # The fleet's set can be reloaded while running; the constructor's is the fallback.
        return list((self._fleet.personas if self._fleet is not None else self._personas).values())

    def _named(self, value: str) -> Persona | None:
        key = value.strip().lower()
        return next((p for p in self._all_personas() if key and key in (p.id, p.name.lower())), None)

    # --- slash commands -----------------------------------------------------------------------------

    def _command_tree(self, client: discord.Client) -> app_commands.CommandTree[discord.Client]:
        tree: app_commands.CommandTree[discord.Client] = app_commands.CommandTree(client)
        run = self._run_command

        def add(name: str, callback: Any, **extra: Any) -> None:
            command = app_commands.Command(name=name, description=COMMANDS[name].help[:100], callback=callback, **extra)
            tree.add_command(command)

        @app_commands.describe(question="What to ask", persona="Who to ask (default: the best match)")
        @app_commands.autocomplete(persona=self._complete_persona)
        async def ask(interaction: discord.Interaction, question: str, persona: str | None = None) -> None:
            await run(interaction, "ask", question, persona)

        @app_commands.describe(question="What to ask the panel")
        async def panel(interaction: discord.Interaction, question: str) -> None:
            await run(interaction, "panel", question)

        @app_commands.describe(persona="The persona to silence in this channel")
        @app_commands.autocomplete(persona=self._complete_persona)
        @app_commands.default_permissions(manage_messages=True)
        async def mute(interaction: discord.Interaction, persona: str) -> None:
            await run(interaction, "mute", "", persona)

        @app_commands.describe(persona="The persona to let speak again")
        @app_commands.autocomplete(persona=self._complete_persona)
        @app_commands.default_permissions(manage_messages=True)
        async def unmute(interaction: discord.Interaction, persona: str) -> None:
            await run(interaction, "unmute", "", persona)

        @app_commands.describe(personas="At least 3 persona ids, or reset; empty: show your followers")
        @app_commands.autocomplete(personas=self._complete_personas)
        async def followers(interaction: discord.Interaction, personas: str | None = None) -> None:
            await run(interaction, "followers", personas or "")

        for name, callback in (
            ("ask", ask),
            ("panel", panel),
            ("mute", mute),
            ("unmute", unmute),
            ("followers", followers),
        ):
            add(name, callback)
        for name in ("personas", "about", "optout", "optin", "forget", "more", "help"):
            add(name, self._plain_command(name))
        return tree

    def _plain_command(self, name: str) -> Callable[[discord.Interaction[Any]], Awaitable[None]]:
        async def callback(interaction: discord.Interaction) -> None:
            await self._run_command(interaction, name)

        return callback

    async def _complete_persona(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        return [app_commands.Choice(name=p.name[:100], value=p.id) for p in self._matching(current)]

    async def _complete_personas(
        self, interaction: discord.Interaction, current: str
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

    async def _sync_commands(self, host: discord.Client) -> None:
        """Sync only when the definitions changed: Discord allows few command updates per day."""
        tree = self._command_tree(host)
        digest = commands_digest(tree)
        key = str(host.application_id)
        state = self._read_command_state()
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
        try:
            self.command_state.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.command_state.with_suffix(".tmp")
            tmp.write_text(json.dumps(state, indent=1))
            tmp.replace(self.command_state)
        except OSError as exc:
            log.warning("discord: cannot remember the command sync in %s: %s", self.command_state, exc)

    def _read_command_state(self) -> dict[str, str]:
        try:
            data = json.loads(self.command_state.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    async def _run_command(
        self, interaction: discord.Interaction, name: str, args: str = "", persona: str | None = None
    ) -> None:
        perms = interaction.permissions
        is_admin = bool(perms.manage_messages)
        private = name in PRIVATE_COMMANDS or (name in ("mute", "unmute") and not is_admin)
        try:
            # Within 3 s, before anything slow: the answers come as follow-ups.
            deferred = await interaction.response.defer(ephemeral=private, thinking=True)
        except discord.HTTPException as exc:
            log.warning("discord: /%s could not be acknowledged: %s", name, exc)
            return
        pending = _Pending(interaction, time.monotonic(), private)
        self._remember(str(interaction.id), pending)
        intro = self._intro(interaction, name, args, persona)
        # Persona answers reply to the "thinking…" message, which the intro then fills in.
        thinking = deferred.message_id if deferred is not None else None
        reply_to = str(thinking) if intro and thinking and not private else None
        command = self._command_event(interaction, name, args, persona, is_admin, reply_to)
        if self._fleet is not None:
            await self._fleet.dispatch(command)
        # Only once the core has decided: an opted-out user's question is not announced to the channel.
        if intro and self._will_reply(command.key):
            await self._post_intro(pending, name, intro)
        self._spawn(self._settle(pending, command.key))

    def _intro(self, interaction: discord.Interaction, name: str, args: str, persona: str | None) -> str:
        """/ask, /panel, /more: what is happening, said before the personas answer ("" for the rest)."""
        user = interaction.user.display_name
        if name == "ask":
            target = self._named(persona or "")
            return f"**{user}** asked {target.name if target else 'the personas'}: {args}"[:LIMIT]
        if name == "panel":
            return f"**{user}** asked the panel: {args}"[:LIMIT]
        return "Asking two more followers…" if name == "more" else ""

    def _will_reply(self, key: str) -> bool:
        """Whether the core's plan for an event has replies (True when there is no audit to read)."""
        audit = getattr(self._fleet, "audit", None)
        plan = audit.get(key) if isinstance(audit, dict) else None
        return plan is None or any(isinstance(a, Reply) for a in plan.actions)

    async def _post_intro(self, pending: _Pending, name: str, text: str) -> None:
        try:
            await pending.interaction.followup.send(text, ephemeral=pending.private, allowed_mentions=nobody())
        except discord.HTTPException as exc:
            log.warning("discord: /%s follow-up failed: %s", name, exc)
            return
        pending.answered = True

    def _command_event(
        self,
        interaction: discord.Interaction,
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

    def _remember(self, key: str, pending: _Pending) -> None:
        now = time.monotonic()
        for old in [k for k, p in self._pending.items() if now - p.at > INTERACTION_SECONDS]:
            del self._pending[old]
        self._pending[key] = pending

    async def _settle(self, pending: _Pending, key: str) -> None:
        """A command the core does not answer (from someone who opted out, say) must not stay "thinking"."""
        audit = getattr(self._fleet, "audit", None)
        plan = audit.get(key) if isinstance(audit, dict) else None
        if plan is None:
            # No audit to read what the core decided: give its answers time to arrive instead.
            await asyncio.sleep(SETTLE_SECONDS)
        elif plan.actions:
            return
        if pending.answered:
            return
        pending.answered = True
        text = OPTED_OUT if getattr(plan, "note", "") == "opted_out" else "Done."
        with contextlib.suppress(discord.HTTPException):
            if not pending.private:
                # The first follow-up would fill in the public "thinking…" message: remove it instead.
                await pending.interaction.delete_original_response()
            await pending.interaction.followup.send(text, ephemeral=True, allowed_mentions=nobody())

    # --- receiving ----------------------------------------------------------------------------------

    async def receive(self, account: str, message: discord.Message) -> None:
        """A gateway message from one of our receivers; the others may deliver the same one."""
        if message.id in self._seen:
            return
        self._seen[message.id] = True
        if await self._is_ours(message):
            return
        event = await self._message_event(account, message)
        if event is not None and self._fleet is not None:
            await self._fleet.dispatch(event)

    async def _is_ours(self, message: discord.Message) -> bool:
        """Our accounts' and webhooks' own messages: the core has already fed them back."""
        if message.author.id in self._bot_ids:
            return True
        hook = message.webhook_id
        if hook is None:
            return False
        if hook in self._our_hooks or hook == self._app_id:
            return True
        if self.config.ignore_foreign_bots:
            # Dropped as a foreign bot's message anyway: no need to ask whose hook it is.
            return False
        if hook not in self._hook_verdicts:
            # Another process of this fleet may have made it (after a deletion, say): ask once.
            channel = message.channel
            parent = channel.parent_id if isinstance(channel, discord.Thread) else channel.id
            with contextlib.suppress(discord.HTTPException, aiohttp.ClientError, LookupError):
                await self._learn_hooks(parent)
            self._hook_verdicts[hook] = hook in self._our_hooks
        return bool(self._hook_verdicts[hook])

    def _where_of(self, channel: Any) -> _Where:
        if isinstance(channel, discord.Thread):
            parent = channel.parent
            return _Where("thread", channel.parent_id, parent.name if parent else channel.name)
        if isinstance(channel, discord.DMChannel | discord.GroupChannel):
            return _Where("dm", None, "dm")
        if isinstance(channel, discord.ForumChannel):
            return _Where("forum", None, channel.name)
        if isinstance(channel, discord.TextChannel):
            return _Where("text", None, channel.name)
        return _Where("other", None, getattr(channel, "name", "") or "")

    async def _message_event(self, account: str, message: discord.Message) -> Message | None:
        if message.type not in (discord.MessageType.default, discord.MessageType.reply):
            return None
        author = message.author
        is_bot = author.bot or message.webhook_id is not None
        if is_bot and self.config.ignore_foreign_bots:
            return None
        channel = message.channel
        where = self._where_of(channel)
        if where.kind == "dm":
            where = _Where("dm", None, "dm", account)
        self._where[channel.id] = where
        text = message.clean_content
        channel_id, parent, is_post = channel.id, where.parent, False
        if where.kind == "thread" and message.id == channel.id and isinstance(channel, discord.Thread):
            if isinstance(channel.parent, discord.ForumChannel):
                # A forum post: its starter message has the thread's id; the title is half the question.
                is_post = True
                text = f"{channel.name}\n\n{text}".strip() if channel.name not in text else text
        elif where.kind == "text" and not is_bot and message.reference is None and self._is_feed(channel.id, where):
            # A post in a text channel feed: its comments go into a thread on it, which will have the
            # message's id (as every thread started from a message does).
            self._feed_posts[message.id] = _FeedPost(channel.id, thread_title(text))
            self._where[message.id] = _Where("thread", channel.id, where.name)
            channel_id, parent, is_post = message.id, channel.id, True
        if not text.strip() and not is_post:
            return None
        reply_to_id, reply_persona = self._replied(message)
        return Message(
            platform=PLATFORM,
            id=str(message.id),
            channel=str(channel_id),
            author=Author(id=str(author.id), name=author.display_name, is_bot=is_bot, is_admin=self._is_admin(message)),
            text=text,
            mentions=self._mentioned(message),
            reply_to_persona=reply_persona,
            reply_to_id=reply_to_id,
            is_dm=where.kind == "dm",
            to_persona=self._accounts[account].persona_id if where.kind == "dm" else None,
            channel_name=where.name,
            parent_channel=str(parent) if parent else None,
            is_post=is_post,
        )

    def _is_feed(self, channel_id: int, where: _Where) -> bool:
        return any(f.channel in (str(channel_id), where.name) for f in self._feeds)

    async def _open_feed_thread(self, thread_id: int) -> bool:
        """Open a feed post's thread (the host does) before its first comment; False if we may not."""
        post: _FeedPost | None = self._feed_posts.get(thread_id)
        if post is None or post.opened:
            return True
        async with post.lock:
            if post.opened:
                return True
            if self._is_denied((HOST, post.parent)):
                return False
            try:
                await self._start_thread(post.parent, thread_id, post.title)
            except discord.Forbidden:
                self._deny((HOST, post.parent), "create threads")
                return False
            except discord.HTTPException as exc:
                # Another process of the fleet opened it first: fine, it is the same thread.
                if exc.code != THREAD_EXISTS:
                    log.warning("discord: could not open a thread on post %s: %s", thread_id, exc)
                    return False
            post.opened = True
        return True

    async def _start_thread(self, channel_id: int, message_id: int, title: str) -> None:
        host = self._host()
        client = host or next((a.sender for a in self._accounts.values() if a.sender), None)
        if client is None:
            raise RuntimeError("no Discord account is logged in")
        # A raw call: discord.py's PartialMessage.create_thread needs the guild cache, which senders lack.
        await client.http.start_thread_with_message(
            channel_id, message_id, name=title, auto_archive_duration=ARCHIVE_MINUTES
        )

    def _mentioned(self, message: discord.Message) -> frozenset[str]:
        found = {self._persona_of_user[u.id] for u in message.mentions if u.id in self._persona_of_user}
        for role in message.role_mentions:
            # Picking a bot in the mention menu sometimes inserts its managed role instead of the user.
            bot_id = role.tags.bot_id if role.tags else None
            if bot_id is not None and bot_id in self._persona_of_user:
                found.add(self._persona_of_user[bot_id])
        return frozenset(found)

    def _replied(self, message: discord.Message) -> tuple[str | None, str | None]:
        ref = message.reference
        if ref is None or ref.message_id is None:
            return None, None
        persona = self._fleet.persona_of(PLATFORM, str(ref.message_id)) if self._fleet else None
        resolved = ref.resolved
        if persona is None and isinstance(resolved, discord.Message):
            if resolved.author.id in self._persona_of_user:
                persona = self._persona_of_user[resolved.author.id]
            elif resolved.webhook_id is not None and resolved.webhook_id in self._our_hooks:
                persona = self._persona_named(resolved.author.name)
        return str(ref.message_id), persona

    def _persona_named(self, username: str) -> str | None:
        return next((p.id for p in self._all_personas() if webhook_username(p.name, p.id) == username), None)

    @staticmethod
    def _is_admin(message: discord.Message) -> bool:
        author = message.author
        if not isinstance(author, discord.Member):
            return False
        try:
            return message.channel.permissions_for(author).manage_messages  # type: ignore[union-attr]
        except (AttributeError, TypeError):
            return author.guild_permissions.manage_messages

    # --- channels, webhooks, permissions ------------------------------------------------------------

    async def _channel(self, channel_id: int) -> _Where:
        where = self._where.get(channel_id)
        if where is not None:
            return where
        client = self._host() or next((a.sender for a in self._accounts.values() if a.sender), None)
        if client is None:
            return _Where("other")
        where = self._where_of(await client.fetch_channel(channel_id))
        self._where[channel_id] = where
        return where

    async def webhook(self, channel_id: int) -> discord.Webhook:
        """The host's webhook in a channel (not a thread): found or created once, then cached."""
        hook = self._hooks.get(channel_id)
        if hook is not None:
            return hook
        async with self._hook_locks.setdefault(channel_id, asyncio.Lock()):
            hook = self._hooks.get(channel_id)
            if hook is None:
                channel, ours = await self._learn_hooks(channel_id)
                hook = ours[0] if ours else await channel.create_webhook(name=HOOK_NAME, reason="botfleet personas")
                self._hooks[channel_id] = hook
                self._our_hooks.add(hook.id)
        return hook

    async def _learn_hooks(self, channel_id: int) -> tuple[Any, list[discord.Webhook]]:
        """The channel, and the host's usable webhooks in it (another process may have made them)."""
        host = self._host()
        if host is None:
            raise LookupError("no host bot, so no webhooks")
        channel: Any = await host.fetch_channel(channel_id)
        me = host.user.id if host.user else None
        ours = [h for h in await channel.webhooks() if h.token and h.user is not None and h.user.id == me]
        self._our_hooks.update(h.id for h in ours)
        return channel, ours

    async def webhook_send(
        self,
        channel_id: int,
        thread: discord.Object | None,
        content: str,
        username: str,
        avatar: str | None,
        mentions: discord.AllowedMentions,
    ) -> discord.WebhookMessage:
        """Send through the channel's webhook; a deleted one is recreated once, a refused name adjusted once."""
        for attempt in range(2):
            hook = await self.webhook(channel_id)
            try:
                return await hook.send(
                    content,
                    username=username,
                    avatar_url=avatar or discord.utils.MISSING,
                    allowed_mentions=mentions,
                    thread=thread or discord.utils.MISSING,
                    wait=True,
                )
            except discord.NotFound as exc:
                if exc.code != UNKNOWN_WEBHOOK or attempt:
                    raise
                log.info("discord: webhook in %s was deleted; making a new one", channel_id)
                self._hooks.pop(channel_id, None)
            except discord.HTTPException as exc:
                if exc.status != 400 or "username" not in str(exc.text).lower() or attempt:
                    raise
                log.warning("discord: webhook name %r refused (%s); using a plainer one", username, exc.text)
                username = webhook_username(re.sub(r"[^\w .-]", "", username), "Persona")
        raise AssertionError("unreachable")

    def _is_denied(self, key: tuple[str, int]) -> bool:
        until = self._denied.get(key)
        return until is not None and until > time.monotonic()

    def _deny(self, key: tuple[str, int], what: str) -> None:
        self._denied[key] = time.monotonic() + DENIED_SECONDS
        self._welcome.pop(key, None)
        if key not in self._denial_logged:
            self._denial_logged.add(key)
            log.warning(
                "discord: %s may not %s in channel %s (403 Missing Permissions); skipping that channel",
                key[0],
                what,
                key[1],
            )

    # --- sending ------------------------------------------------------------------------------------

    async def _target(self, reply: Reply, persona: Persona) -> _Target | None:
        channel = int(reply.channel)
        to_user = _snowflake(reply.to_user)
        ping = self.config.reply_ping and to_user is not None
        reply_to = _snowflake(reply.reply_to)
        # The thread's own starter (a feed post) needs no "replying to": the whole thread is about it.
        answering = reply_to if reply_to is not None and reply_to != channel else None
        own = self._own(persona.id)
        if own is not None and own.sender is not None and self._may_write(own.name, channel):
            reference = None
            if answering is not None:
                reference = discord.MessageReference(message_id=answering, channel_id=channel, fail_if_not_exists=False)
            return _AccountTarget(own.name, own.sender, channel, reference, nobody(replied_user=ping))
        host = self._host()
        if host is None:
            return None
        where = await self._channel(channel)
        if where.kind == "dm":
            return _DMTarget(host, channel, persona.name)
        header = f"-# ↪ <@{to_user}>" if answering is not None and to_user is not None else ""
        mentions = nobody()
        if ping and header and to_user is not None:
            user = discord.Object(to_user)
            mentions = discord.AllowedMentions(everyone=False, roles=False, replied_user=False, users=[user])
        username = webhook_username(persona.name, persona.id)
        return _WebhookTarget(self, host, channel, where, username, persona.avatar, mentions, header)

    async def deliver(self, reply: Reply, persona: Persona, snapshots: AsyncIterator[str]) -> Sent:
        if not await self._open_feed_thread(int(reply.channel)):
            return Sent()
        try:
            target = await self._target(reply, persona)
        except discord.Forbidden:
            self._deny((HOST, int(reply.channel)), "use webhooks")
            return Sent()
        if target is None:
            return Sent()
        if not await self._probe(target):
            return Sent()
        typing = asyncio.ensure_future(self._keep_typing(target))
        try:
            return await self._write(target, snapshots, typing.cancel)
        except discord.Forbidden:
            self._deny(target.key, "send messages")
            return Sent()
        except discord.HTTPException as exc:
            acct = self._accounts.get(target.key[0])
            if exc.status == 401 and acct is not None and isinstance(target, _AccountTarget):
                await self._revoke(acct, "token rejected by Discord (401)")
            else:
                log.warning("discord: reply by %s in %s failed: %s", persona.id, reply.channel, exc)
            return Sent()
        finally:
            typing.cancel()

    async def _probe(self, target: _Target) -> bool:
        """Show typing and find the webhook, and so learn whether the channel lets us in before the
        LLM is paid for.

        The first contact with a channel (or a parent's threads) holds a lock, so replies racing into
        a channel that refuses us make one refused request between them, not one each.
        """
        if self._is_denied(target.key) or self._is_denied(target.scope):
            return False
        if target.key in self._welcome:
            await self._typing(target)
            return True
        async with self._probe_locks.setdefault(target.scope, asyncio.Lock()):
            if self._is_denied(target.key) or self._is_denied(target.scope):
                return False
            try:
                await target.typing()
            except discord.Forbidden:
                self._deny(target.key, "send messages")
                return False
            except (discord.HTTPException, aiohttp.ClientError) as exc:
                log.debug("discord: typing failed: %s", exc)
            try:
                await target.prepare()
            except discord.Forbidden:
                self._deny(target.scope, "manage webhooks")
                return False
            except (discord.HTTPException, aiohttp.ClientError, LookupError) as exc:
                log.debug("discord: finding the webhook failed: %s", exc)
                return True
            self._welcome[target.key] = True
            return True

    async def _typing(self, target: _Target) -> None:
        try:
            await target.typing()
        except discord.Forbidden:
            # Permissions can change: forget that the channel let us in, the send will tell.
            self._welcome.pop(target.key, None)
        except (discord.HTTPException, aiohttp.ClientError) as exc:
            log.debug("discord: typing failed: %s", exc)

    async def _keep_typing(self, target: _Target) -> None:
        while True:
            await asyncio.sleep(TYPING_REFRESH)
            await self._typing(target)

    async def _write(self, target: _Target, snapshots: AsyncIterator[str], posted: Callable[[], Any]) -> Sent:
        live = _Live(target, self.edit_interval, posted) if self.config.stream_edits else None
        text = ""
        try:
            async for text in snapshots:
                if live is not None:
                    live.update(self._preview(text, target.limit))
        except IncompleteReply as cut:
            shown = await self._cut_off(target, live, cut.partial)
            return Sent(message_ids=shown, complete=False)
        except (Exception, asyncio.CancelledError):
            # Whatever stopped the model, what is on screen must not pass for a finished reply.
            try:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._cut_off(target, live, live.latest if live else ""), 5)
            finally:
                if live is not None:
                    live.abandon()
            raise
        ids = await self._finish(target, live, text, posted)
        return Sent(message_ids=tuple(str(i) for i in ids), text=text)

    @staticmethod
    def _preview(text: str, limit: int) -> str:
        chunks = split_text(text, limit)
        return chunks[0] if chunks else ""

    async def _finish(self, target: _Target, live: _Live | None, text: str, posted: Callable[[], Any]) -> list[int]:
        chunks = split_text(text, target.limit)
        ids: list[int] = []
        if live is not None:
            await live.stop()
            if live.error is not None:
                raise live.error
            if live.message_id is not None:
                ids.append(live.message_id)
                if chunks and chunks[0] != live.shown:
                    await live.pace()
                    await target.edit(live.message_id, chunks[0])
                chunks = chunks[1:]
        for chunk in chunks:
            ids.append(await target.post(chunk, first=not ids))
            posted()
        return ids

    async def _cut_off(self, target: _Target, live: _Live | None, partial: str) -> tuple[str, ...]:
        """Mark a streamed message whose model stopped mid-way, or remove it if nothing is worth keeping."""
        if live is None:
            return ()
        await live.stop()
        if live.message_id is None:
            return ()
        await live.pace()
        kept = self._preview(partial, target.limit - len(CUT_MARK) - 1)
        try:
            if kept:
                await target.edit(live.message_id, f"{kept} {CUT_MARK}")
            else:
                await target.delete(live.message_id)
        except discord.HTTPException as exc:
            log.warning("discord: could not mark a cut-off reply: %s", exc)
        return (str(live.message_id),)

    async def react(self, react: React, persona: Persona) -> None:
        own = self._own(persona.id)
        if own is not None and not self._may_write(own.name, int(react.channel)):
            own = None
        client = own.sender if own is not None else self._host()
        if client is None:
            return
        channel, message_id = int(react.channel), int(react.message_id)
        post = self._feed_posts.get(channel)
        if post is not None and message_id == channel:
            # A text channel feed's post lives in the channel, not in the thread named after it.
            channel = post.parent
        key = (own.name if own is not None else HOST, channel)
        if self._is_denied(key):
            return
        message = client.get_partial_messageable(channel).get_partial_message(message_id)
        try:
            await message.add_reaction(react.emoji)
        except discord.Forbidden:
            self._deny(key, "add reactions")
        except discord.HTTPException as exc:
            log.info("discord: %s could not react %s: %s", persona.id, react.emoji, exc)

    async def notify(self, notice: Notice) -> None:
        pending = self._pending.get(notice.command_id or "")
        if pending is not None and time.monotonic() - pending.at < INTERACTION_SECONDS:
            await self._follow_up(pending, notice)
            return
        host = self._host()
        if host is None:
            return
        try:
            await self._post_notice(host, notice)
        except discord.Forbidden:
            self._deny((HOST, int(notice.channel)), "send messages")
        except discord.HTTPException as exc:
            log.warning("discord: notice in %s failed: %s", notice.channel, exc)

    async def _follow_up(self, pending: _Pending, notice: Notice) -> None:
        pending.answered = True
        try:
            for chunk in split_text(notice.text, LIMIT):
                await pending.interaction.followup.send(chunk, ephemeral=notice.private, allowed_mentions=nobody())
        except discord.HTTPException as exc:
            log.warning("discord: answering /%s failed: %s", getattr(pending.interaction.command, "name", "?"), exc)

    async def _post_notice(self, host: discord.Client, notice: Notice) -> None:
        if notice.private and notice.to_user:
            # No interaction to answer ephemerally: a DM is the private place.
            user = await host.fetch_user(int(notice.to_user))
            channel: Any = await user.create_dm()
        else:
            channel = host.get_partial_messageable(int(notice.channel))
        reply_to = _snowflake(notice.reply_to)
        for n, chunk in enumerate(split_text(notice.text, LIMIT)):
            reference = None
            if n == 0 and reply_to is not None and not notice.private:
                reference = discord.MessageReference(
                    message_id=reply_to, channel_id=int(notice.channel), fail_if_not_exists=False
                )
            await channel.send(chunk, reference=reference, allowed_mentions=nobody())
