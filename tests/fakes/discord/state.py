"""Everything the fake Discord stores, and the payloads built from it (guilds, members, READY)."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from tests.fakes.cdn import FileHost
from tests.fakes.discord.models import (
    API_PREFIX,
    BOT_ROLE_PERMISSIONS,
    DISCORD_EPOCH_MS,
    EVERYONE_PERMISSIONS,
    THREAD_TYPES,
    ApiError,
    BotAccount,
    Call,
    FakeInteraction,
    Fault,
    Identify,
    IdLike,
    JsonDict,
    Reaction,
    Session,
    to_id,
)


class DiscordState:
    """The world's data, id lookups, and which gateway sessions hear about what."""

    def __init__(self, *, heartbeat_interval_ms: int = 41250, interaction_timeout: float = 3.0) -> None:
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.interaction_timeout = interaction_timeout
        self.port = 0

        self.users: dict[int, JsonDict] = {}
        self.bots: dict[int, BotAccount] = {}
        self.guilds: dict[int, JsonDict] = {}
        self.channels: dict[int, JsonDict] = {}  # threads and DM channels included
        self.webhooks: dict[int, JsonDict] = {}
        self.deleted_webhooks: set[int] = set()
        self.reactions: list[Reaction] = []
        self.calls: list[Call] = []
        self.denied: list[Call] = []  # bot requests refused by deny_channel
        self.commands: dict[tuple[int, int | None], list[JsonDict]] = {}  # (app id, guild id or None)
        self.command_syncs: dict[tuple[int, int | None], int] = {}  # bulk overwrites per scope
        self.interactions: dict[int, FakeInteraction] = {}
        self.deleted_message_ids: set[int] = set()
        self.unhandled: list[Call] = []  # requests to routes the fake does not implement
        self.identifies: list[Identify] = []  # every accepted IDENTIFY, in order
        # Files people attach, served at /attachments/{id}/{filename} as Discord's CDN does.
        self.cdn = FileHost()

        self._tokens: dict[str, int] = {}
        self._messages: dict[int, JsonDict] = {}
        self._channel_messages: dict[int, list[int]] = {}
        self._dm_ids: dict[tuple[int, int], int] = {}  # (bot id, human id) -> DM channel id
        self._dm_bots: dict[int, int] = {}  # DM channel id -> the bot in it
        self._nonces: dict[tuple[int, int, str], int] = {}
        self._bot_roles: dict[tuple[int, int], int] = {}
        self._denials: set[tuple[int, int | None]] = set()
        self._gateway_refused: set[str] = set()
        self._faults: list[Fault] = []
        self._sessions: dict[str, Session] = {}
        self._writers: set[asyncio.Task[None]] = set()
        self._last_snowflake = 0
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        """The value for ``discord.http.Route.BASE``."""
        return f"{self.base_url}{API_PREFIX}"

    @property
    def gateway_url(self) -> str:
        """The value for ``DiscordWebSocket.DEFAULT_GATEWAY`` (wrap it in ``yarl.URL``)."""
        return f"ws://127.0.0.1:{self.port}/gateway"

    def _snowflake(self) -> int:
        # Real-looking snowflakes: discord.py derives created_at from them and webhook URLs need 17+ digits.
        candidate = (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
        self._last_snowflake = max(candidate, self._last_snowflake + 1)
        return self._last_snowflake

    def _bot_id(self, bot: IdLike) -> int:
        if isinstance(bot, str) and bot in self._tokens:
            return self._tokens[bot]
        bot_id = to_id(bot)
        if bot_id not in self.bots:
            raise KeyError(f"unknown bot {bot!r}")
        return bot_id

    def _channel(self, cid: int) -> JsonDict:
        try:
            return self.channels[cid]
        except KeyError:
            raise ApiError(404, 10003, "Unknown Channel") from None

    def _guild_channel_ids(self, channel: JsonDict) -> set[int]:
        """The channel and, for a thread, its parent: deny rules on either apply."""
        ids = {int(channel["id"])}
        if channel["type"] in THREAD_TYPES and channel.get("parent_id"):
            ids.add(int(channel["parent_id"]))
        return ids

    # ----------------------------------------------------------------- who hears what

    def _live_sessions(self) -> list[Session]:
        return [s for s in self._sessions.values() if s.ws is not None and not s.ws.closed]

    def _target_sessions(self) -> list[Session]:
        # Sessions whose socket dropped still collect events, so a RESUME can replay them.
        return list(self._sessions.values())

    def _channel_sessions(self, cid: int, guild_intent: int, dm_intent: int) -> list[Session]:
        """Who hears about a channel's events: everyone with the guild intent, or for a DM only its bot."""
        dm_bot = self._dm_bots.get(cid)
        if dm_bot is None:
            gid = int(self.channels[cid].get("guild_id") or 0) if cid in self.channels else 0
            return [s for s in self._target_sessions() if s.intents & guild_intent and s.owns(gid)]
        return [s for s in self._target_sessions() if s.bot_id == dm_bot and s.intents & dm_intent and s.gets_dms]

    def _broadcast(self, event: str, data: JsonDict, intent: int) -> None:
        # A guild's events go only to the shard that owns the guild.
        gid = int(data.get("guild_id") or 0)
        for session in self._target_sessions():
            if session.intents & intent and session.owns(gid):
                session.enqueue_dispatch(event, data)

    # ----------------------------------------------------------------- payload builders

    def _bot_role_id(self, gid: int, bot_id: int) -> int:
        key = (gid, bot_id)
        if key not in self._bot_roles:
            self._bot_roles[key] = self._snowflake()
        return self._bot_roles[key]

    def _roles(self, gid: int) -> list[JsonDict]:
        everyone = {
            "id": str(gid),
            "name": "@everyone",
            "permissions": str(EVERYONE_PERMISSIONS),
            "position": 0,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "managed": False,
            "mentionable": False,
            "flags": 0,
        }
        roles = [everyone]
        for position, bot_id in enumerate(self.bots, start=1):
            roles.append(
                {
                    **everyone,
                    "id": str(self._bot_role_id(gid, bot_id)),
                    "name": self.users[bot_id]["username"],
                    "permissions": str(BOT_ROLE_PERMISSIONS),
                    "position": position,
                    "managed": True,
                    "tags": {"bot_id": str(bot_id)},
                }
            )
        return roles

    def _member(self, user: JsonDict, gid: int, *, with_user: bool = True) -> JsonDict:
        uid = int(user["id"])
        roles = [str(self._bot_role_id(gid, uid))] if uid in self.bots else []
        member: JsonDict = {
            "roles": roles,
            "joined_at": "2024-01-01T00:00:00+00:00",
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "nick": None,
            "avatar": None,
            "premium_since": None,
            "communication_disabled_until": None,
        }
        if with_user:
            member["user"] = user
        return member

    def _guild_create(self, gid: int, bot_id: int) -> JsonDict:
        guild = self.guilds[gid]
        channels = [c for c in self.channels.values() if c.get("guild_id") == str(gid)]
        members = [self._member(u, gid) for u in self.users.values()]
        return {
            **guild,
            "unavailable": False,
            "icon": None,
            "splash": None,
            "banner": None,
            "discovery_splash": None,
            "description": None,
            "features": [],
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "preferred_locale": "en-US",
            "system_channel_id": None,
            "afk_channel_id": None,
            "afk_timeout": 300,
            "application_id": None,
            "joined_at": "2024-01-01T00:00:00+00:00",
            "large": False,
            "member_count": len(members),
            "roles": self._roles(gid),
            "emojis": [],
            "stickers": [],
            "channels": [c for c in channels if c["type"] not in THREAD_TYPES],
            "threads": [c for c in channels if c["type"] in THREAD_TYPES],
            "members": members,
            "presences": [],
            "voice_states": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
        }

    def _ready(self, session: Session) -> JsonDict:
        bot = self.bots[session.bot_id]
        return {
            "v": 10,
            "user": {**bot.user, "verified": True, "mfa_enabled": False, "email": None},
            "guilds": [{"id": str(gid), "unavailable": True} for gid in self.guilds if session.owns(gid)],
            "session_id": session.session_id,
            "resume_gateway_url": self.gateway_url,
            "application": {"id": bot.application["id"], "flags": bot.application["flags"]},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "geo_ordered_rtc_regions": [],
            "session_type": "normal",
            "shard": list(session.shard or (0, 1)),
        }

    def _webhook_author(self, webhook: JsonDict, body: JsonDict) -> JsonDict:
        return {
            "id": webhook["id"],
            "username": body.get("username") or webhook["name"],
            "avatar": None,
            "discriminator": "0000",
            "global_name": None,
            "bot": True,
            "public_flags": 0,
            "flags": 0,
        }
