"""The gateway websocket: HELLO, IDENTIFY, RESUME, heartbeats and member requests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time

from aiohttp import WSMsgType, web

from tests.fakes.discord.messages import MessageStore
from tests.fakes.discord.models import (
    INTENT_GUILDS,
    Identify,
    JsonDict,
    Session,
)


class Gateway(MessageStore):
    """One websocket per connection; sessions outlive sockets so discord.py can RESUME."""

    async def _writer(self, session: Session, ws: web.WebSocketResponse) -> None:
        # One writer per socket keeps frames in order; sync code only enqueues.
        with contextlib.suppress(ConnectionError, RuntimeError):
            while not ws.closed:
                await ws.send_str(await session.queue.get())

    def _attach(self, session: Session, ws: web.WebSocketResponse) -> None:
        if session.writer is not None:
            # A writer left from the dropped socket would steal frames from the resumed one.
            session.writer.cancel()
        session.ws = ws
        session.writer = asyncio.create_task(self._writer(session, ws))
        self._writers.add(session.writer)
        session.writer.add_done_callback(self._writers.discard)

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": self.heartbeat_interval_ms}}))
        session: Session | None = None
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                frame = json.loads(msg.data)
                op, data = frame.get("op"), frame.get("d")
                if op == 1:
                    if session is None:
                        # Before IDENTIFY there is no session queue, and nothing else to order against.
                        await ws.send_str(json.dumps({"op": 11}))
                    else:
                        session.queue.put_nowait(json.dumps({"op": 11}))
                elif op == 2:
                    refusal = self._identify_refusal(data)
                    if refusal is not None:
                        await ws.close(code=refusal[0], message=refusal[1])
                        break
                    session = self._identify(ws, data)
                elif op == 6:
                    session = self._resume(ws, data)
                    if session is None:
                        await ws.send_str(json.dumps({"op": 9, "d": False}))
                elif op == 8 and session is not None:
                    self._answer_member_request(session, data)
        finally:
            if session is not None and session.ws is ws:
                if session.writer is not None:
                    session.writer.cancel()
                    session.writer = None
                session.ws = None
                # A client that closes cleanly ends its session; any other close may RESUME it.
                if not session.dropped and ws.close_code in (1000, 1001, None):
                    self._sessions.pop(session.session_id, None)
        return ws

    def _identify_refusal(self, data: JsonDict) -> tuple[int, bytes] | None:
        """Discord's close code and reason for an IDENTIFY it refuses, or None."""
        token = str(data.get("token", ""))
        bot_id = self._tokens.get(token)
        if bot_id is None or token in self._gateway_refused:
            return 4004, b"Authentication failed."
        shard = data.get("shard")
        if shard is None:
            return (4011, b"Sharding required.") if self.bots[bot_id].require_sharding else None
        if not (isinstance(shard, list) and len(shard) == 2 and 0 <= int(shard[0]) < int(shard[1])):
            return 4010, b"Invalid shard."
        return None

    def _identify(self, ws: web.WebSocketResponse, data: JsonDict) -> Session:
        bot_id = self._tokens[str(data.get("token", ""))]
        limit = self.bots[bot_id].session_start_limit
        limit["remaining"] = max(0, limit["remaining"] - 1)
        raw = data.get("shard")
        shard = (int(raw[0]), int(raw[1])) if raw else None
        self.identifies.append(Identify(bot_id, shard, time.monotonic()))
        session = Session(
            session_id=secrets.token_hex(16), bot_id=bot_id, intents=int(data.get("intents", 0)), shard=shard
        )
        self._sessions[session.session_id] = session
        self._attach(session, ws)
        # READY and every GUILD_CREATE are queued in one synchronous step, so no test event can
        # reach the client before it knows the guilds.
        session.enqueue_dispatch("READY", self._ready(session))
        if session.intents & INTENT_GUILDS:
            for gid in self.guilds:
                if not session.owns(gid):
                    continue
                session.enqueue_dispatch("GUILD_CREATE", self._guild_create(gid, bot_id))
        return session

    def _resume(self, ws: web.WebSocketResponse, data: JsonDict) -> Session | None:
        session = self._sessions.get(str(data.get("session_id")))
        token = str(data.get("token"))
        if session is None or self._tokens.get(token) != session.bot_id or token in self._gateway_refused:
            return None
        if session.ws is not None and not session.ws.closed:
            return None
        self._attach(session, ws)
        session.dropped = False
        # The history holds everything the queue holds, so replay from it and drop the queue.
        while not session.queue.empty():
            session.queue.get_nowait()
        last_seen = int(data.get("seq") or 0)
        for seq, frame in session.history:
            if seq > last_seen:
                session.queue.put_nowait(frame)
        session.enqueue_dispatch("RESUMED", {})
        return session

    def _answer_member_request(self, session: Session, data: JsonDict) -> None:
        guild_ids = data.get("guild_id")
        for gid in guild_ids if isinstance(guild_ids, list) else [guild_ids]:
            if gid is None or int(gid) not in self.guilds:
                continue
            members = [self._member(u, int(gid)) for u in self.users.values()]
            session.enqueue_dispatch(
                "GUILD_MEMBERS_CHUNK",
                {
                    "guild_id": str(gid),
                    "members": members,
                    "chunk_index": 0,
                    "chunk_count": 1,
                    "nonce": data.get("nonce"),
                },
            )
