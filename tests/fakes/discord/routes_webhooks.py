"""REST routes for webhooks: create, look up, execute, and edit or delete their messages."""

from __future__ import annotations

import secrets

from aiohttp import web

from tests.fakes.discord.models import (
    CATEGORY,
    FLAG_LOADING,
    FORUM,
    MAX_WEBHOOKS_PER_CHANNEL,
    THREAD_TYPES,
    ApiError,
    Call,
    FakeInteraction,
    JsonDict,
    field_error,
    invalid_form,
    json_response,
)
from tests.fakes.discord.routes_interactions import InteractionRoutes


class WebhookRoutes(InteractionRoutes):
    """Webhooks, and interaction tokens used as webhooks (follow-ups and @original)."""

    async def _get_channel_webhooks(self, request: web.Request, call: Call) -> web.Response:
        channel = self._channel(int(request.match_info["channel_id"]))
        self._check_allowed(call, channel)
        self._no_dm(channel)
        return json_response(self.channel_webhooks(channel["id"]))

    async def _get_guild_webhooks(self, request: web.Request, call: Call) -> web.Response:
        gid = request.match_info["guild_id"]
        return json_response([w for w in self.webhooks.values() if w["guild_id"] == gid])

    async def _post_webhook(self, request: web.Request, call: Call) -> web.Response:
        channel = self._channel(int(request.match_info["channel_id"]))
        self._check_allowed(call, channel)
        self._no_dm(channel)
        if channel["type"] in THREAD_TYPES or channel["type"] == CATEGORY:
            raise ApiError(400, 50008, "Cannot execute action on this channel type")
        body = self._body(call)
        name = str(body.get("name") or "")
        self._check_webhook_name(name, "name")
        if len(self.channel_webhooks(channel["id"])) >= MAX_WEBHOOKS_PER_CHANNEL:
            raise ApiError(400, 30007, "Maximum number of webhooks reached (15)")
        wid = self._snowflake()
        token = secrets.token_urlsafe(51)
        webhook = {
            "id": str(wid),
            "type": 1,
            "guild_id": channel["guild_id"],
            "channel_id": channel["id"],
            "name": name,
            "avatar": None,
            "token": token,
            "application_id": str(call.bot_id),
            "user": self._bot_user(call),
            "url": f"https://discord.com/api/webhooks/{wid}/{token}",
        }
        self.webhooks[wid] = webhook
        return json_response(webhook)

    @staticmethod
    def _check_webhook_name(name: str, field_name: str) -> None:
        lowered = name.lower()
        if not 1 <= len(name) <= 80:
            raise invalid_form(field_error(field_name, "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 80 in length."))
        for banned in ("clyde", "discord"):
            if banned in lowered:
                raise invalid_form(
                    field_error(field_name, "USERNAME_INVALID_CONTAINS", f'Username cannot contain "{banned}"')
                )

    def _webhook(self, request: web.Request, *, token: bool) -> JsonDict:
        wid = int(request.match_info["webhook_id"])
        webhook = self.webhooks.get(wid)
        if webhook is None:
            raise ApiError(404, 10015, "Unknown Webhook")
        if token and request.match_info["webhook_token"] != webhook["token"]:
            raise ApiError(401, 50027, "Invalid Webhook Token")
        return webhook

    async def _get_webhook(self, request: web.Request, call: Call) -> web.Response:
        return json_response(self._webhook(request, token=False))

    async def _get_webhook_with_token(self, request: web.Request, call: Call) -> web.Response:
        webhook = self._webhook(request, token=True)
        return json_response({k: v for k, v in webhook.items() if k != "user"})

    async def _delete_webhook_route(self, request: web.Request, call: Call) -> web.Response:
        self.delete_webhook(self._webhook(request, token=False)["id"])
        return web.Response(status=204)

    async def _delete_webhook_with_token(self, request: web.Request, call: Call) -> web.Response:
        self.delete_webhook(self._webhook(request, token=True)["id"])
        return web.Response(status=204)

    async def _execute_webhook(self, request: web.Request, call: Call) -> web.Response:
        interaction = self._interaction_by_token(request)
        if interaction is not None:
            return await self._followup(interaction, call)
        webhook = self._webhook(request, token=True)
        body = self._body(call)
        if body.get("username") is not None:
            self._check_webhook_name(str(body["username"]), "username")
        channel = self._channel(int(webhook["channel_id"]))
        author = self._webhook_author(webhook, body)
        thread_id = call.query.get("thread_id")
        if thread_id:
            target = self.channels.get(int(thread_id))
            if target is None or target.get("parent_id") != channel["id"]:
                raise ApiError(404, 10003, "Unknown Channel")
            channel = target
        elif channel["type"] == FORUM:
            if not body.get("thread_name"):
                raise ApiError(400, 220001, "Webhooks posted to forum channels must have a thread_name or thread_id")
            _, message = self._create_thread_with_message(
                channel, author, str(body["thread_name"]), body, files=call.files, webhook_id=webhook["id"]
            )
            return self._webhook_answer(call, message)
        message = self._create_message(channel, author, body, files=call.files, webhook_id=webhook["id"])
        self._dispatch_message("MESSAGE_CREATE", message)
        return self._webhook_answer(call, message)

    @staticmethod
    def _webhook_answer(call: Call, message: JsonDict) -> web.Response:
        if call.query.get("wait") in ("1", "true", "True"):
            return json_response(message)
        return web.Response(status=204)

    def _wh_message(self, request: web.Request, call: Call) -> tuple[JsonDict, FakeInteraction | None]:
        interaction = self._interaction_by_token(request)
        raw_id = request.match_info["message_id"]
        if interaction is not None:
            mid = interaction.original_message_id if raw_id == "@original" else int(raw_id)
            if mid is None or (mid != interaction.original_message_id and mid not in interaction.followup_ids):
                raise ApiError(404, 10008, "Unknown Message")
        else:
            webhook = self._webhook(request, token=True)
            if raw_id == "@original":
                raise ApiError(404, 10008, "Unknown Message")
            mid = int(raw_id)
            stored = self._messages.get(mid)
            if stored is None or stored.get("webhook_id") != webhook["id"]:
                raise ApiError(404, 10008, "Unknown Message")
        message = self._messages.get(mid)
        if message is None or mid in self.deleted_message_ids:
            raise ApiError(404, 10008, "Unknown Message")
        return message, interaction

    async def _get_wh_message(self, request: web.Request, call: Call) -> web.Response:
        message, _ = self._wh_message(request, call)
        return json_response(message)

    async def _patch_wh_message(self, request: web.Request, call: Call) -> web.Response:
        message, interaction = self._wh_message(request, call)
        was_loading = bool(message["flags"] & FLAG_LOADING)
        self._edit_message(message, self._body(call))
        if was_loading:
            message["flags"] &= ~FLAG_LOADING
            if interaction is not None:
                interaction.loading = False
        self._dispatch_message("MESSAGE_UPDATE", message)
        return json_response(message)

    async def _delete_wh_message(self, request: web.Request, call: Call) -> web.Response:
        message, interaction = self._wh_message(request, call)
        self._delete(message)
        if interaction is not None and int(message["id"]) == interaction.original_message_id:
            # A deleted "thinking" message is gone: the next follow-up is a message of its own.
            interaction.loading = False
        return web.Response(status=204)
