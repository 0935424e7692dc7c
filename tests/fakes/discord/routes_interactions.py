"""REST routes for application commands and interaction callbacks and follow-ups."""

from __future__ import annotations

import asyncio

from aiohttp import web

from tests.fakes.discord.models import (
    COMMAND_NAME,
    FLAG_EPHEMERAL,
    FLAG_LOADING,
    ApiError,
    Call,
    FakeInteraction,
    JsonDict,
    field_error,
    invalid_form,
    json_response,
)
from tests.fakes.discord.routes_channels import ChannelRoutes


class InteractionRoutes(ChannelRoutes):
    """Slash command sync, and answering interactions within Discord's rules."""

    def _app_scope(self, request: web.Request, call: Call) -> tuple[int, int | None]:
        app_id = int(request.match_info["application_id"])
        if app_id != call.bot_id:
            raise ApiError(403, 20012, "You are not authorized to perform this action on this application")
        raw_gid = request.match_info.get("guild_id")
        if raw_gid is not None and int(raw_gid) not in self.guilds:
            raise ApiError(404, 10004, "Unknown Guild")
        return app_id, int(raw_gid) if raw_gid is not None else None

    def _make_command(self, app_id: int, gid: int | None, body: JsonDict, existing: list[JsonDict]) -> JsonDict:
        name = str(body.get("name", ""))
        ctype = int(body.get("type") or 1)
        if ctype == 1 and (not COMMAND_NAME.match(name) or name != name.lower()):
            raise invalid_form(field_error("name", "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid"))
        description = str(body.get("description", ""))
        if ctype == 1 and not 1 <= len(description) <= 100:
            raise invalid_form(
                field_error("description", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
            )
        previous = next((c for c in existing if c["name"] == name and c["type"] == ctype), None)
        command: JsonDict = {
            "options": [],
            "default_member_permissions": None,
            "dm_permission": True,
            "nsfw": False,
            "contexts": None,
            "integration_types": [0],
            **body,
            "id": previous["id"] if previous else str(self._snowflake()),
            "application_id": str(app_id),
            "version": str(self._snowflake()),
            "type": ctype,
            "name": name,
            "description": description,
        }
        if gid is not None:
            command["guild_id"] = str(gid)
        return command

    async def _put_commands(self, request: web.Request, call: Call) -> web.Response:
        scope = self._app_scope(request, call)
        body = call.json if isinstance(call.json, list) else []
        existing = self.commands.get(scope, [])
        commands = [self._make_command(scope[0], scope[1], c, existing) for c in body]
        keys = [(c["name"], c["type"]) for c in commands]
        if len(keys) != len(set(keys)):
            raise invalid_form(field_error("_errors", "APPLICATION_COMMANDS_DUPLICATE_NAME", "Duplicate name"))
        self.commands[scope] = commands
        self.command_syncs[scope] = self.command_syncs.get(scope, 0) + 1
        return json_response(commands)

    async def _get_commands(self, request: web.Request, call: Call) -> web.Response:
        return json_response(self.commands.get(self._app_scope(request, call), []))

    async def _post_command(self, request: web.Request, call: Call) -> web.Response:
        scope = self._app_scope(request, call)
        existing = self.commands.setdefault(scope, [])
        command = self._make_command(scope[0], scope[1], self._body(call), existing)
        existing[:] = [c for c in existing if c["id"] != command["id"]] + [command]
        return json_response(command, 201)

    def _find_command(self, app_id: int, gid: int, name: str) -> JsonDict | None:
        for scope in ((app_id, gid), (app_id, None)):
            for command in self.commands.get(scope, []):
                if command["name"] == name:
                    return command
        return None

    # ----------------------------------------------------------------- interactions

    async def _callback(self, request: web.Request, call: Call) -> web.Response:
        interaction = self.interactions.get(int(request.match_info["interaction_id"]))
        if interaction is None or interaction.token != request.match_info["interaction_token"]:
            raise ApiError(404, 10062, "Unknown interaction")
        if interaction.acknowledged:
            raise ApiError(400, 40060, "Interaction has already been acknowledged.")
        if asyncio.get_running_loop().time() - interaction.created_at > self.interaction_timeout:
            raise ApiError(404, 10062, "Unknown interaction")
        body = self._body(call)
        interaction.callbacks.append(body)
        ctype = int(body.get("type", 0))
        data = body.get("data") or {}
        flags = int(data.get("flags") or 0)
        message: JsonDict | None = None
        if ctype in (4, 5):
            if ctype == 5:
                data = {"content": "", "flags": FLAG_LOADING | (flags & FLAG_EPHEMERAL)}
                interaction.loading = True
            message = self._interaction_message(interaction, data, allow_empty=ctype == 5)
            interaction.original_message_id = int(message["id"])
            self._dispatch_message("MESSAGE_CREATE", message)
        elif ctype == 7:
            target = interaction.payload.get("message")
            if target is not None and int(target["id"]) in self._messages:
                message = self._edit_message(self._messages[int(target["id"])], data)
                self._dispatch_message("MESSAGE_UPDATE", message)
        answer: JsonDict = {
            "interaction": {
                "id": str(interaction.id),
                "type": interaction.payload["type"],
                "activity_instance_id": None,
                "response_message_id": message["id"] if message else None,
                "response_message_loading": ctype == 5,
                "response_message_ephemeral": bool(message and message["flags"] & FLAG_EPHEMERAL),
            },
        }
        if ctype in (4, 5, 6, 7, 9):
            answer["resource"] = {"type": ctype}
            if message is not None:
                answer["resource"]["message"] = message
        return json_response(answer)

    def _interaction_message(
        self, interaction: FakeInteraction, data: JsonDict, *, allow_empty: bool = False
    ) -> JsonDict:
        channel = self._channel(interaction.channel_id)
        bot_user = self.bots[interaction.application_id].user
        human = interaction.payload["member"]["user"]
        extra = {
            "application_id": str(interaction.application_id),
            "interaction_metadata": {
                "id": str(interaction.id),
                "type": interaction.payload["type"],
                "user": human,
                "authorizing_integration_owners": interaction.payload["authorizing_integration_owners"],
                "name": interaction.payload["data"]["name"],
            },
            "type": 20,
        }
        # The deferred "thinking" placeholder has no content, which a normal send would refuse.
        return self._create_message(
            channel,
            bot_user,
            data,
            webhook_id=str(interaction.application_id),
            extra=extra,
            validate=not allow_empty,
        )

    async def _followup(self, interaction: FakeInteraction, call: Call) -> web.Response:
        if not interaction.acknowledged:
            raise ApiError(404, 10015, "Unknown Webhook")
        body = self._body(call)
        if interaction.loading and interaction.original_message_id is not None:
            # Discord turns the deferred "thinking" message into the first follow-up.
            message = self._messages[interaction.original_message_id]
            self._validate_body(body, files=call.files)
            self._edit_message(message, body)
            message["flags"] &= ~FLAG_LOADING
            interaction.loading = False
            self._dispatch_message("MESSAGE_UPDATE", message)
            return json_response(message)
        message = self._interaction_message(interaction, body)
        message["type"] = 0
        interaction.followup_ids.append(int(message["id"]))
        self._dispatch_message("MESSAGE_CREATE", message)
        return json_response(message)

    def _interaction_by_token(self, request: web.Request) -> FakeInteraction | None:
        token = request.match_info.get("webhook_token") or request.match_info.get("interaction_token")
        for interaction in self.interactions.values():
            if interaction.token == token and str(interaction.application_id) == request.match_info.get(
                "webhook_id", str(interaction.application_id)
            ):
                return interaction
        return None
