"""REST plumbing: recording each call, injected faults, auth, and the permission checks routes share."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from tests.fakes.discord.gateway import Gateway
from tests.fakes.discord.models import (
    API_PREFIX,
    DM,
    ApiError,
    Call,
    Fault,
    JsonDict,
    json_response,
)


class RestPlumbing(Gateway):
    """Wraps every route handler: record the call, apply a fault, turn ApiError into Discord's body."""

    def _wrap(
        self, handler: Callable[[web.Request, Call], Awaitable[web.StreamResponse]], auth: bool
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            call = await self._record(request)
            response = await self._respond(request, call, handler, auth)
            call.status = response.status
            return response

        return wrapped

    async def _record(self, request: web.Request) -> Call:
        body: Any = None
        files: list[str] = []
        content_type = request.content_type
        if content_type == "application/json":
            raw = await request.read()
            body = json.loads(raw) if raw else None
        elif content_type.startswith("multipart/"):
            form = await request.post()
            for name, value in form.items():
                if name == "payload_json" and isinstance(value, str):
                    body = json.loads(value)
                elif isinstance(value, web.FileField):
                    files.append(value.filename)
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bot ") if header.startswith("Bot ") else None
        webhook_id = request.match_info.get("webhook_id")
        call = Call(
            method=request.method,
            path=request.path.removeprefix(API_PREFIX),
            query=dict(request.query),
            json=body,
            token=token,
            bot_id=self._tokens.get(token) if token else None,
            webhook_id=int(webhook_id) if webhook_id and webhook_id.isdigit() else None,
            files=files,
        )
        self.calls.append(call)
        return call

    def _take_fault(self, call: Call) -> Fault | None:
        for fault in self._faults:
            if fault.method == call.method and fault.path.search(call.path):
                if fault.skip > 0:
                    fault.skip -= 1
                    return None
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    async def _respond(
        self,
        request: web.Request,
        call: Call,
        handler: Callable[[web.Request, Call], Awaitable[web.StreamResponse]],
        auth: bool,
    ) -> web.StreamResponse:
        fault = self._take_fault(call)
        if fault is not None and not fault.after:
            return json_response(fault.body, fault.status, fault.headers)
        try:
            if auth and call.bot_id is None:
                raise ApiError(401, 0, "401: Unauthorized")
            response = await handler(request, call)
        except ApiError as error:
            if error.status == 403 and error.code == 50013:
                self.denied.append(call)
            response = error.response()
        if fault is not None:
            return json_response(fault.body, fault.status, fault.headers)
        return response

    def _check_allowed(self, call: Call, channel: JsonDict) -> None:
        self._check_visible(call, channel)
        for cid in self._guild_channel_ids(channel):
            if (cid, None) in self._denials or (cid, call.bot_id) in self._denials:
                raise ApiError(403, 50013, "Missing Permissions")

    def _check_visible(self, call: Call, channel: JsonDict) -> None:
        dm_bot = self._dm_bots.get(int(channel["id"]))
        if dm_bot is not None and dm_bot != call.bot_id:
            raise ApiError(403, 50001, "Missing Access")

    @staticmethod
    def _no_dm(channel: JsonDict) -> None:
        if channel["type"] == DM:
            raise ApiError(403, 50003, "Cannot execute action on a DM channel")

    @staticmethod
    def _body(call: Call) -> JsonDict:
        return call.json if isinstance(call.json, dict) else {}

    def _bot_user(self, call: Call) -> JsonDict:
        assert call.bot_id is not None
        return self.bots[call.bot_id].user

    async def _unknown_route(self, request: web.Request, call: Call) -> web.Response:
        self.unhandled.append(call)
        raise ApiError(404, 0, f"404: Not Found (the fake has no {call.method} {call.path})")
