"""FakeDiscord: the HTTP server, its route table, the humans a test scripts, and discord.py's redirect."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Awaitable, Callable, Iterator
from typing import Self

import discord.gateway
import discord.http
import yarl
from aiohttp import web

from tests.fakes.discord.models import (
    API_PREFIX,
    BOT_ROLE_PERMISSIONS,
    EVERYONE_PERMISSIONS,
    FORUM,
    Call,
    FakeInteraction,
    IdLike,
    JsonDict,
    Reaction,
    to_id,
)
from tests.fakes.discord.routes_webhooks import WebhookRoutes


class FakeDiscord(WebhookRoutes):
    """Fake Discord REST API and gateway on 127.0.0.1, for real discord.py clients."""

    async def start(self) -> None:
        app = web.Application(client_max_size=32 * 1024 * 1024)
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/attachments/{aid}/{filename}", self._cdn)
        self._add_routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        for session in list(self._sessions.values()):
            if session.ws is not None and not session.ws.closed:
                await session.ws.close(code=1001, message=b"fake Discord stopping")
        self._sessions.clear()
        for task in list(self._writers):
            task.cancel()
        await asyncio.gather(*self._writers, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _add_routes(self, app: web.Application) -> None:
        routes: list[tuple[str, str, Callable[[web.Request, Call], Awaitable[web.StreamResponse]], bool]] = [
            ("GET", "/gateway", self._get_gateway, False),
            ("GET", "/gateway/bot", self._get_gateway_bot, True),
            ("GET", "/users/@me", self._get_me, True),
            ("POST", "/users/@me/channels", self._create_dm, True),
            ("GET", "/users/{user_id}", self._get_user, True),
            ("GET", "/oauth2/applications/@me", self._get_application, True),
            ("GET", "/applications/@me", self._get_application, True),
            ("GET", "/channels/{channel_id}", self._get_channel, True),
            ("GET", "/guilds/{guild_id}/channels", self._get_guild_channels, True),
            ("GET", "/guilds/{guild_id}/members/{user_id}", self._get_member, True),
            ("GET", "/channels/{channel_id}/messages", self._get_messages, True),
            ("POST", "/channels/{channel_id}/messages", self._post_message, True),
            ("GET", "/channels/{channel_id}/messages/{message_id}", self._get_message, True),
            ("PATCH", "/channels/{channel_id}/messages/{message_id}", self._patch_message, True),
            ("DELETE", "/channels/{channel_id}/messages/{message_id}", self._delete_message, True),
            ("POST", "/channels/{channel_id}/typing", self._typing, True),
            (
                "PUT",
                "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me",
                self._put_reaction,
                True,
            ),
            (
                "DELETE",
                "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me",
                self._delete_reaction,
                True,
            ),
            ("POST", "/channels/{channel_id}/messages/{message_id}/threads", self._thread_from_message, True),
            ("POST", "/channels/{channel_id}/threads", self._post_thread, True),
            ("GET", "/channels/{channel_id}/webhooks", self._get_channel_webhooks, True),
            ("POST", "/channels/{channel_id}/webhooks", self._post_webhook, True),
            ("GET", "/guilds/{guild_id}/webhooks", self._get_guild_webhooks, True),
            ("GET", "/webhooks/{webhook_id}", self._get_webhook, True),
            ("DELETE", "/webhooks/{webhook_id}", self._delete_webhook_route, True),
            ("GET", "/webhooks/{webhook_id}/{webhook_token}", self._get_webhook_with_token, False),
            ("DELETE", "/webhooks/{webhook_id}/{webhook_token}", self._delete_webhook_with_token, False),
            ("POST", "/webhooks/{webhook_id}/{webhook_token}", self._execute_webhook, False),
            (
                "GET",
                "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}",
                self._get_wh_message,
                False,
            ),
            (
                "PATCH",
                "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}",
                self._patch_wh_message,
                False,
            ),
            (
                "DELETE",
                "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}",
                self._delete_wh_message,
                False,
            ),
            ("PUT", "/applications/{application_id}/commands", self._put_commands, True),
            ("GET", "/applications/{application_id}/commands", self._get_commands, True),
            ("POST", "/applications/{application_id}/commands", self._post_command, True),
            ("PUT", "/applications/{application_id}/guilds/{guild_id}/commands", self._put_commands, True),
            ("GET", "/applications/{application_id}/guilds/{guild_id}/commands", self._get_commands, True),
            ("POST", "/applications/{application_id}/guilds/{guild_id}/commands", self._post_command, True),
            ("POST", "/interactions/{interaction_id}/{interaction_token}/callback", self._callback, False),
        ]
        for method, path, handler, auth in routes:
            app.router.add_route(method, API_PREFIX + path, self._wrap(handler, auth))
        # Last, so it only sees what nothing above handles: recorded, so a test can spot the gap.
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self._wrap(self._unknown_route, False))

    async def _cdn(self, request: web.Request) -> web.StreamResponse:
        return await self.cdn.serve(request.match_info["aid"], request)

    # ----------------------------------------------------------------- human actions

    def upload(
        self, filename: str, data: bytes, content_type: str, *, description: str = "", **options: object
    ) -> JsonDict:
        """A file a human attaches (pass it to post_message): stored on the fake CDN. `options` go to
        tests.fakes.cdn.FakeFile (declare_length, redirect)."""
        aid = str(self._snowflake())
        url = f"{self.base_url}/attachments/{aid}/{filename}"
        self.cdn.put(aid, data, content_type, **options)
        attachment: JsonDict = {
            "id": aid,
            "filename": filename,
            "size": len(data),
            "url": url,
            "proxy_url": url,
            "content_type": content_type,
        }
        if description:
            attachment["description"] = description
        return attachment

    async def post_message(
        self,
        channel_id: IdLike,
        author: IdLike,
        content: str,
        *,
        mentions: list[JsonDict] | None = None,
        reply_to: IdLike | None = None,
        embeds: list[JsonDict] | None = None,
        attachments: list[JsonDict] | None = None,
    ) -> JsonDict:
        """A human posts; every connected bot gets MESSAGE_CREATE. `attachments` come from upload().

        ``mentions=None`` parses ``<@id>`` from the content and, for a reply, pings the replied-to
        author as Discord's client does by default; a list is taken as the exact mentions.
        """
        channel = self._channel(to_id(channel_id))
        user = self.users[to_id(author)]
        reference = None
        if reply_to is not None:
            reference = {"message_id": str(to_id(reply_to)), "channel_id": channel["id"]}
        body: JsonDict = {"content": content, "embeds": embeds or []}
        if reference is not None:
            body["message_reference"] = reference
        # A photo needs no words: the empty-message check counts the attachments too.
        message = self._create_message(channel, user, body, validate=not attachments)
        if mentions is not None:
            message["mentions"] = [self.users[to_id(m)] for m in mentions]
        if attachments:
            message["attachments"] = list(attachments)
        self._dispatch_message("MESSAGE_CREATE", message)
        return message

    async def post_dm(self, bot: IdLike, user: IdLike, content: str, *, reply_to: IdLike | None = None) -> JsonDict:
        """A human DMs a bot (token, id or user dict): only that bot's sessions get MESSAGE_CREATE."""
        return await self.post_message(self.dm_channel(bot, user), user, content, reply_to=reply_to)

    async def create_forum_post(
        self, forum_channel_id: IdLike, author: IdLike, title: str, content: str
    ) -> tuple[JsonDict, JsonDict]:
        """A human opens a forum post: THREAD_CREATE, then MESSAGE_CREATE inside the new thread."""
        forum = self._channel(to_id(forum_channel_id))
        if forum["type"] != FORUM:
            raise ValueError("not a forum channel")
        user = self.users[to_id(author)]
        return self._create_thread_with_message(forum, user, title, {"content": content})

    async def post_reaction(self, channel_id: IdLike, message_id: IdLike, user: IdLike, emoji: str) -> Reaction:
        """A human reacts; connected bots get MESSAGE_REACTION_ADD."""
        message = self._message_in(to_id(channel_id), to_id(message_id))
        return self._add_reaction(message, to_id(user), emoji)

    async def send_interaction(
        self,
        bot: IdLike,
        channel_id: IdLike,
        user: IdLike,
        command_name: str,
        options: list[JsonDict] | None = None,
        type: int = 2,
        *,
        resolved: JsonDict | None = None,
    ) -> FakeInteraction:
        """A human runs a slash command (type 2) or types into an option (type 4, autocomplete).

        ``bot`` is the bot's token, id or user dict. The command id comes from the commands that bot
        synced (guild ones first), as Discord routes it; an unknown name still goes out with a fresh id.
        """
        bot_id = self._bot_id(bot)
        channel = self._channel(to_id(channel_id))
        gid = int(channel["guild_id"])
        sessions = [s for s in self._target_sessions() if s.bot_id == bot_id and s.owns(gid)]
        if not sessions:
            raise RuntimeError(f"bot {bot_id} has no gateway session for guild {gid}")
        human = self.users[to_id(user)]
        command = self._find_command(bot_id, gid, command_name)
        data: JsonDict = {
            "id": command["id"] if command else str(self._snowflake()),
            "name": command_name,
            "type": 1,
            "options": options or [],
        }
        if command is not None and command.get("guild_id"):
            data["guild_id"] = command["guild_id"]
        if resolved is not None:
            data["resolved"] = resolved
        iid = self._snowflake()
        token = "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(48)
        payload: JsonDict = {
            "id": str(iid),
            "application_id": str(bot_id),
            "type": type,
            "data": data,
            "guild_id": str(gid),
            "guild": {"id": str(gid), "locale": "en-US", "features": []},
            "channel_id": channel["id"],
            "channel": channel,
            "member": {**self._member(human, gid), "permissions": str(EVERYONE_PERMISSIONS)},
            "token": token,
            "version": 1,
            "app_permissions": str(BOT_ROLE_PERMISSIONS),
            "locale": "en-US",
            "guild_locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"0": str(gid)},
            "context": 0,
            "attachment_size_limit": 10 * 1024 * 1024,
        }
        interaction = FakeInteraction(
            id=iid,
            token=token,
            application_id=bot_id,
            channel_id=int(channel["id"]),
            payload=payload,
            created_at=asyncio.get_running_loop().time(),
        )
        self.interactions[iid] = interaction
        # Discord hands an interaction to one session of the bot, not to each.
        sessions[-1].enqueue_dispatch("INTERACTION_CREATE", payload)
        return interaction

    async def drop_connections(self, bot: IdLike, code: int = 4000) -> None:
        """Close a bot's gateway sockets as a network blip would; discord.py then RESUMEs."""
        bot_id = self._bot_id(bot)
        for session in list(self._sessions.values()):
            if session.bot_id == bot_id and session.ws is not None and not session.ws.closed:
                session.dropped = True
                await session.ws.close(code=code, message=b"fake drop")


@contextlib.contextmanager
def point_discord_py_at(fake: FakeDiscord) -> Iterator[None]:
    """Point discord.py's process-wide REST base and gateway at ``fake``, and restore them after.

    The product does the same from its config: ``Route.BASE = api_base`` and
    ``DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)`` (a yarl.URL, not a str: discord.py
    calls ``.with_query`` on it).
    """
    old = (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
    discord.http.Route.BASE = fake.api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)
    try:
        yield
    finally:
        discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old
