"""REST routes for identity, channels, messages, reactions and threads."""

from __future__ import annotations

from aiohttp import web

from tests.fakes.discord.models import (
    DM,
    FLAG_EPHEMERAL,
    FLAG_HAS_THREAD,
    FORUM,
    PRIVATE_THREAD,
    THREAD_TYPES,
    ApiError,
    Call,
    Reaction,
    field_error,
    invalid_form,
    json_response,
)
from tests.fakes.discord.rest import RestPlumbing


class ChannelRoutes(RestPlumbing):
    """The routes a bot uses to talk in channels."""

    async def _get_gateway(self, request: web.Request, call: Call) -> web.Response:
        return json_response({"url": self.gateway_url})

    async def _get_gateway_bot(self, request: web.Request, call: Call) -> web.Response:
        assert call.bot_id is not None  # the route requires a bot token
        bot = self.bots[call.bot_id]
        return json_response(
            {"url": self.gateway_url, "shards": bot.shards, "session_start_limit": bot.session_start_limit}
        )

    async def _get_me(self, request: web.Request, call: Call) -> web.Response:
        user = self._bot_user(call)
        return json_response({**user, "verified": True, "mfa_enabled": False, "email": None, "locale": "en-US"})

    async def _get_user(self, request: web.Request, call: Call) -> web.Response:
        user = self.users.get(int(request.match_info["user_id"]))
        if user is None:
            raise ApiError(404, 10013, "Unknown User")
        return json_response(user)

    async def _get_application(self, request: web.Request, call: Call) -> web.Response:
        assert call.bot_id is not None
        return json_response(self.bots[call.bot_id].application)

    async def _get_channel(self, request: web.Request, call: Call) -> web.Response:
        channel = self._channel(int(request.match_info["channel_id"]))
        self._check_visible(call, channel)
        return json_response(channel)

    async def _create_dm(self, request: web.Request, call: Call) -> web.Response:
        raw = self._body(call).get("recipient_id")
        if raw is None or not str(raw).isdigit():
            raise invalid_form(field_error("recipient_id", "BASE_TYPE_REQUIRED", "This field is required"))
        if int(raw) not in self.users:
            raise ApiError(400, 50033, "Invalid Recipient(s)")
        assert call.bot_id is not None
        return json_response(self.dm_channel(call.bot_id, int(raw)))

    async def _get_guild_channels(self, request: web.Request, call: Call) -> web.Response:
        gid = request.match_info["guild_id"]
        if int(gid) not in self.guilds:
            raise ApiError(404, 10004, "Unknown Guild")
        channels = [c for c in self.channels.values() if c.get("guild_id") == gid and c["type"] not in THREAD_TYPES]
        return json_response(channels)

    async def _get_member(self, request: web.Request, call: Call) -> web.Response:
        gid = int(request.match_info["guild_id"])
        user = self.users.get(int(request.match_info["user_id"]))
        if gid not in self.guilds:
            raise ApiError(404, 10004, "Unknown Guild")
        if user is None:
            raise ApiError(404, 10007, "Unknown Member")
        return json_response(self._member(user, gid))

    # ----------------------------------------------------------------- messages

    async def _get_messages(self, request: web.Request, call: Call) -> web.Response:
        cid = int(request.match_info["channel_id"])
        self._check_visible(call, self._channel(cid))
        limit = min(int(request.query.get("limit", 50)), 100)
        messages = [m for m in self.messages(cid) if not m["flags"] & FLAG_EPHEMERAL]
        if "before" in request.query:
            messages = [m for m in messages if int(m["id"]) < int(request.query["before"])]
        if "after" in request.query:
            after = [m for m in messages if int(m["id"]) > int(request.query["after"])]
            return json_response(list(reversed(after[:limit])))
        return json_response(list(reversed(messages[-limit:])))

    async def _get_message(self, request: web.Request, call: Call) -> web.Response:
        self._check_visible(call, self._channel(int(request.match_info["channel_id"])))
        message = self._message_in(int(request.match_info["channel_id"]), int(request.match_info["message_id"]))
        return json_response(message)

    async def _post_message(self, request: web.Request, call: Call) -> web.Response:
        channel = self._channel(int(request.match_info["channel_id"]))
        self._check_allowed(call, channel)
        if channel["type"] == DM and any(u["bot"] for u in channel["recipients"]):
            raise ApiError(403, 50007, "Cannot send messages to this user")
        message = self._create_message(channel, self._bot_user(call), self._body(call), files=call.files)
        self._dispatch_message("MESSAGE_CREATE", message)
        return json_response(message)

    async def _patch_message(self, request: web.Request, call: Call) -> web.Response:
        channel = self._channel(int(request.match_info["channel_id"]))
        self._check_visible(call, channel)
        message = self._message_in(int(channel["id"]), int(request.match_info["message_id"]))
        if message["author"]["id"] != str(call.bot_id):
            raise ApiError(403, 50005, "Cannot edit a message authored by another user")
        self._edit_message(message, self._body(call))
        self._dispatch_message("MESSAGE_UPDATE", message)
        return json_response(message)

    async def _delete_message(self, request: web.Request, call: Call) -> web.Response:
        channel = self._channel(int(request.match_info["channel_id"]))
        self._check_visible(call, channel)
        message = self._message_in(int(channel["id"]), int(request.match_info["message_id"]))
        if message["author"]["id"] != str(call.bot_id):
            self._check_allowed(call, channel)
        self._delete(message)
        return web.Response(status=204)

    async def _typing(self, request: web.Request, call: Call) -> web.Response:
        channel = self._channel(int(request.match_info["channel_id"]))
        self._check_allowed(call, channel)
        return web.Response(status=204)

    async def _put_reaction(self, request: web.Request, call: Call) -> web.Response:
        channel = self._channel(int(request.match_info["channel_id"]))
        message = self._message_in(int(channel["id"]), int(request.match_info["message_id"]))
        self._check_allowed(call, channel)
        assert call.bot_id is not None
        self._add_reaction(message, call.bot_id, request.match_info["emoji"])
        return web.Response(status=204)

    async def _delete_reaction(self, request: web.Request, call: Call) -> web.Response:
        cid, mid = int(request.match_info["channel_id"]), int(request.match_info["message_id"])
        self._message_in(cid, mid)
        assert call.bot_id is not None
        reaction = Reaction(cid, mid, request.match_info["emoji"], call.bot_id)
        if reaction in self.reactions:
            self.reactions.remove(reaction)
        return web.Response(status=204)

    # ----------------------------------------------------------------- threads

    async def _thread_from_message(self, request: web.Request, call: Call) -> web.Response:
        channel = self._channel(int(request.match_info["channel_id"]))
        message = self._message_in(int(channel["id"]), int(request.match_info["message_id"]))
        self._check_allowed(call, channel)
        self._no_dm(channel)
        if int(message["id"]) in self.channels:
            raise ApiError(400, 160004, "A thread has already been created for this message")
        body = self._body(call)
        assert call.bot_id is not None
        # A thread started from a message takes the message's id, as on Discord.
        thread = self._new_thread(channel, call.bot_id, str(body.get("name", "thread")), int(message["id"]), 11)
        if body.get("auto_archive_duration"):
            thread["thread_metadata"]["auto_archive_duration"] = body["auto_archive_duration"]
        message["flags"] |= FLAG_HAS_THREAD
        message["thread"] = thread
        self._announce_thread(thread)
        return json_response(thread)

    async def _post_thread(self, request: web.Request, call: Call) -> web.Response:
        channel = self._channel(int(request.match_info["channel_id"]))
        self._check_allowed(call, channel)
        self._no_dm(channel)
        body = self._body(call)
        name = str(body.get("name", "thread"))
        author = self._bot_user(call)
        if channel["type"] == FORUM:
            message_body = dict(body.get("message") or {})
            if body.get("applied_tags"):
                message_body["applied_tags"] = body["applied_tags"]
            thread, message = self._create_thread_with_message(channel, author, name, message_body, files=call.files)
            return json_response({**thread, "message": message})
        thread = self._new_thread(channel, int(author["id"]), name, None, int(body.get("type") or PRIVATE_THREAD))
        self._announce_thread(thread)
        return json_response(thread)
