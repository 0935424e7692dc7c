"""What a test sets up (users, bots, guilds, channels, faults) and what it asks the fake afterwards."""

from __future__ import annotations

import re
from collections.abc import Callable

from tests.fakes.discord.models import (
    APP_OWNER,
    DM,
    FORUM,
    INTENT_GUILDS,
    TEXT,
    THREAD_TYPES,
    BotAccount,
    Call,
    Fault,
    IdLike,
    JsonDict,
    T,
    to_id,
)
from tests.fakes.discord.state import DiscordState
from tests.fakes.polling import wait_for


class DiscordWorld(DiscordState):
    """Scripted setup and read-only queries; nothing here is reachable over HTTP."""

    def add_user(self, name: str, user_id: int | None = None) -> JsonDict:
        """A human account."""
        return self._new_user(name, user_id, bot=False)

    def _new_user(self, name: str, user_id: int | None, *, bot: bool) -> JsonDict:
        uid = user_id if user_id is not None else self._snowflake()
        user: JsonDict = {
            "id": str(uid),
            "username": name,
            "global_name": None if bot else name,
            "discriminator": "0",
            "avatar": None,
            "bot": bot,
            "public_flags": 0,
            "flags": 0,
        }
        self.users[uid] = user
        return user

    def add_bot(self, token: str, name: str, bot_id: int | None = None) -> JsonDict:
        """A bot account with its application (same id); returns the bot's user dict."""
        user = self._new_user(name, bot_id, bot=True)
        uid = int(user["id"])
        application: JsonDict = {
            "id": str(uid),
            "name": name,
            "icon": None,
            "description": "",
            "summary": "",
            "bot_public": True,
            "bot_require_code_grant": False,
            "verify_key": "0" * 64,
            "owner": APP_OWNER,
            "team": None,
            "flags": 0,
            "bot": user,
            "interactions_endpoint_url": None,
            "redirect_uris": [],
            "tags": [],
        }
        self.bots[uid] = BotAccount(token=token, user=user, application=application)
        self._tokens[token] = uid
        return user

    def add_guild(self, name: str, owner: IdLike | None = None, *, guild_id: int | None = None) -> JsonDict:
        """A guild; every bot (present and future) is a member. Announced to connected bots (to the
        shard that owns it). ``guild_id`` picks the id, and so the shard: ``(id >> 22) % shards``."""
        gid = self._snowflake() if guild_id is None else guild_id
        guild: JsonDict = {"id": str(gid), "name": name, "owner_id": str(to_id(owner)) if owner else None}
        self.guilds[gid] = guild
        for session in self._target_sessions():
            if session.intents & INTENT_GUILDS and session.owns(gid):
                # Without "unavailable" discord.py reads it as a join (on_guild_join), not an outage ending.
                payload = self._guild_create(gid, session.bot_id)
                del payload["unavailable"]
                session.enqueue_dispatch("GUILD_CREATE", payload)
        return guild

    def add_channel(
        self,
        guild: IdLike,
        name: str,
        type: int = TEXT,
        *,
        parent: IdLike | None = None,
        topic: str | None = None,
    ) -> JsonDict:
        """A guild channel (0 text, 15 forum, 4 category...). Announced to connected bots."""
        gid = to_id(guild)
        if gid not in self.guilds:
            raise KeyError(f"unknown guild {gid}")
        cid = self._snowflake()
        position = sum(1 for c in self.channels.values() if c.get("guild_id") == str(gid))
        channel: JsonDict = {
            "id": str(cid),
            "type": type,
            "guild_id": str(gid),
            "name": name,
            "position": position,
            "permission_overwrites": [],
            "parent_id": str(to_id(parent)) if parent is not None else None,
            "nsfw": False,
            "topic": topic,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "flags": 0,
        }
        if type == FORUM:
            channel.update(
                available_tags=[],
                default_reaction_emoji=None,
                default_sort_order=None,
                default_forum_layout=0,
                default_thread_rate_limit_per_user=0,
            )
        self.channels[cid] = channel
        self._channel_messages[cid] = []
        self._broadcast("CHANNEL_CREATE", channel, INTENT_GUILDS)
        return channel

    def deny_channel(self, channel_id: IdLike, bot_id: IdLike | None = None) -> None:
        """Refuse bot writes in a channel (and its threads) with 403 code 50013; None means every bot."""
        self._denials.add((to_id(channel_id), to_id(bot_id) if bot_id is not None else None))

    def allow_channel(self, channel_id: IdLike, bot_id: IdLike | None = None) -> None:
        self._denials.discard((to_id(channel_id), to_id(bot_id) if bot_id is not None else None))

    def dm_channel(self, bot: IdLike, user: IdLike) -> JsonDict:
        """The DM channel between a bot and a human, made on first use (type 1, ``recipients: [user]``)."""
        bot_id, uid = self._bot_id(bot), to_id(user)
        if uid not in self.users:
            raise KeyError(f"unknown user {uid}")
        cid = self._dm_ids.get((bot_id, uid))
        if cid is not None:
            return self.channels[cid]
        cid = self._snowflake()
        channel: JsonDict = {
            "id": str(cid),
            "type": DM,
            "last_message_id": None,
            "recipients": [self.users[uid]],
            "flags": 0,
        }
        self.channels[cid] = channel
        self._channel_messages[cid] = []
        self._dm_ids[(bot_id, uid)] = cid
        self._dm_bots[cid] = bot_id
        return channel

    def set_session_start_limit(
        self,
        bot: IdLike,
        *,
        total: int = 1000,
        remaining: int | None = None,
        reset_after: int = 0,
        max_concurrency: int = 1,
    ) -> None:
        """What ``GET /gateway/bot`` says about a bot's IDENTIFY budget (``remaining`` defaults to
        ``total``); each IDENTIFY then takes one from ``remaining``, down to 0. The fake never refuses
        an IDENTIFY for want of budget (Discord resets the token; see :meth:`revoke_token`)."""
        left = total if remaining is None else remaining
        limit = {"total": total, "remaining": left, "reset_after": reset_after, "max_concurrency": max_concurrency}
        self.bots[self._bot_id(bot)].session_start_limit = limit

    def set_shards(self, bot: IdLike, shards: int, *, required: bool = True) -> None:
        """``GET /gateway/bot`` recommends ``shards``; with ``required`` an unsharded IDENTIFY of the bot
        is closed with 4011 (sharding required), as for a bot in more than 2,500 guilds."""
        account = self.bots[self._bot_id(bot)]
        account.shards, account.require_sharding = shards, required

    def session_start_limit(self, bot: IdLike) -> JsonDict:
        return dict(self.bots[self._bot_id(bot)].session_start_limit)

    def revoke_token(self, token: str, *, rest: bool = True) -> None:
        """Invalidate a bot token: the gateway closes IDENTIFY with 4004, and with ``rest`` every REST
        call gets 401 (``rest=False`` refuses only the gateway, as with a token reset mid-connect)."""
        self._gateway_refused.add(token)
        if rest:
            self._tokens.pop(token, None)

    def delete_webhook(self, webhook_id: IdLike) -> None:
        """Delete a webhook behind the bots' backs: later executes get 404 code 10015."""
        wid = to_id(webhook_id)
        self.webhooks.pop(wid, None)
        self.deleted_webhooks.add(wid)

    def fail_next(
        self,
        method: str,
        path_regex: str,
        status: int = 500,
        *,
        times: int = 1,
        code: int = 0,
        message: str | None = None,
        retry_after: float = 0.05,
        via: bool = True,
        after: bool = False,
        skip: int = 0,
    ) -> None:
        """Answer the next ``times`` matching requests with an error.

        ``path_regex`` is searched in the path relative to the API base. For 429 the body carries
        ``retry_after``, and a ``Via`` header unless ``via=False`` (discord.py retries a 429 only when
        that header is there, otherwise it assumes a Cloudflare ban and raises). With ``after=True`` the
        request is carried out first and only the answer is lost, as when Discord times out after
        posting. discord.py sleeps 1 s before retrying a 500, 502, 504 or 524. ``skip`` lets that many
        matching requests through first (the second part of a reply fails, say).
        """
        headers: dict[str, str] = {}
        if status == 429:
            body: JsonDict = {
                "message": message or "You are being rate limited.",
                "retry_after": retry_after,
                "global": False,
                "code": code,
            }
            headers["Retry-After"] = str(retry_after)
            if via:
                headers["Via"] = "1.1 google"
        else:
            body = {"message": message or f"{status}: fake failure", "code": code}
        self._faults.append(Fault(method.upper(), re.compile(path_regex), status, body, headers, times, after, skip))

    # ----------------------------------------------------------------- queries for tests

    def calls_to(self, method: str, path_regex: str) -> list[Call]:
        """Recorded calls with this method whose path matches ``path_regex`` (re.search)."""
        pattern = re.compile(path_regex)
        return [c for c in self.calls if c.method == method.upper() and pattern.search(c.path)]

    def messages(self, channel_id: IdLike, *, author: IdLike | None = None) -> list[JsonDict]:
        """Stored, undeleted messages of a channel or thread, oldest first.

        Ephemeral interaction answers (flag 64) are included, though no bot and no history call sees them.
        """
        ids = self._channel_messages.get(to_id(channel_id), [])
        result = [self._messages[m] for m in ids if m not in self.deleted_message_ids]
        if author is not None:
            author_id = str(to_id(author))
            result = [m for m in result if m["author"]["id"] == author_id]
        return result

    def message(self, message_id: IdLike) -> JsonDict:
        return self._messages[to_id(message_id)]

    def threads(self, parent_id: IdLike) -> list[JsonDict]:
        pid = str(to_id(parent_id))
        return [c for c in self.channels.values() if c["type"] in THREAD_TYPES and c["parent_id"] == pid]

    def channel_webhooks(self, channel_id: IdLike) -> list[JsonDict]:
        cid = str(to_id(channel_id))
        return [w for w in self.webhooks.values() if w["channel_id"] == cid]

    def connected_bot_ids(self) -> set[int]:
        """Bots with an identified, open gateway connection."""
        return {s.bot_id for s in self._live_sessions()}

    async def wait_for(
        self,
        predicate: Callable[[], T],
        timeout: float = 5.0,  # noqa: ASYNC109 - a polling deadline, not a cancel scope
        interval: float = 0.01,
    ) -> T:
        """Poll ``predicate`` until it returns something truthy, and return that."""
        return await wait_for(predicate, timeout, interval)
