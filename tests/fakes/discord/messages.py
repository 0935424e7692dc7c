"""Storing, editing, deleting and dispatching messages, reactions and threads (shared by REST and humans)."""

from __future__ import annotations

from dataclasses import dataclass

from tests.fakes.discord.models import (
    CATEGORY,
    FLAG_EPHEMERAL,
    FORUM,
    INTENT_DIRECT_MESSAGE_REACTIONS,
    INTENT_DIRECT_MESSAGES,
    INTENT_GUILD_MESSAGE_REACTIONS,
    INTENT_GUILD_MESSAGES,
    INTENT_GUILDS,
    INTENT_MESSAGE_CONTENT,
    MAX_CONTENT,
    PUBLIC_THREAD,
    ROLE_MENTION,
    THREAD_TYPES,
    USER_MENTION,
    ApiError,
    JsonDict,
    Reaction,
    Session,
    field_error,
    invalid_form,
    now_iso,
)
from tests.fakes.discord.world import DiscordWorld


@dataclass(frozen=True)
class _Allowed:
    """A message's allowed_mentions as Discord applies it; none at all lets every mention ping."""

    parse: frozenset[str]
    users: frozenset[str]
    roles: frozenset[str]
    replied_user: bool

    @classmethod
    def of(cls, allowed: JsonDict | None) -> _Allowed:
        if allowed is None:
            return cls(frozenset({"users", "roles", "everyone"}), frozenset(), frozenset(), True)
        return cls(
            frozenset(allowed.get("parse") or []),
            frozenset(str(u) for u in allowed.get("users") or []),
            frozenset(str(r) for r in allowed.get("roles") or []),
            bool(allowed.get("replied_user", False)),
        )


def _nonce_key(author: JsonDict, cid: int, body: JsonDict) -> tuple[int, int, str] | None:
    """Who sent which nonce where, for a body that asks Discord to enforce it."""
    nonce = body.get("nonce")
    if nonce is None or not body.get("enforce_nonce"):
        return None
    return (int(author["id"]), cid, str(nonce))


class MessageStore(DiscordWorld):
    """Messages as Discord keeps them: validation, mentions, nonces, and who receives each event."""

    def _message_in(self, cid: int, mid: int) -> JsonDict:
        message = self._messages.get(mid)
        if message is None or mid in self.deleted_message_ids or message["channel_id"] != str(cid):
            raise ApiError(404, 10008, "Unknown Message")
        return message

    def _validate_body(self, body: JsonDict, *, files: list[str] | None = None, creating: bool = True) -> None:
        content = body.get("content")
        if content is not None and not isinstance(content, str):
            content = str(content)
        if content is not None and len(content) > MAX_CONTENT:
            raise invalid_form(
                field_error("content", "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_CONTENT} or fewer in length.")
            )
        if creating and not (
            content
            or body.get("embeds")
            or files
            or body.get("sticker_ids")
            or body.get("components")
            or body.get("poll")
        ):
            raise ApiError(400, 50006, "Cannot send an empty message")

    def _resolve_mentions(
        self, content: str, allowed_mentions: JsonDict | None, referenced: JsonDict | None
    ) -> tuple[list[JsonDict], list[str], bool]:
        """Mentions that actually ping: Discord filters parsed mentions through allowed_mentions."""
        allowed = _Allowed.of(allowed_mentions)
        user_ids = self._pinged_user_ids(content, allowed)
        if referenced is not None and allowed.replied_user and "webhook_id" not in referenced:
            # A webhook's author is not a user, so replying to it pings nobody.
            if referenced["author"]["id"] not in user_ids:
                user_ids.append(referenced["author"]["id"])
        roles = [r for r in ROLE_MENTION.findall(content) if "roles" in allowed.parse or r in allowed.roles]
        everyone = "everyone" in allowed.parse and ("@everyone" in content or "@here" in content)
        return [self.users[int(u)] for u in user_ids], roles, everyone

    def _pinged_user_ids(self, content: str, allowed: _Allowed) -> list[str]:
        user_ids: list[str] = []
        for uid in USER_MENTION.findall(content):
            if ("users" in allowed.parse or uid in allowed.users) and int(uid) in self.users and uid not in user_ids:
                user_ids.append(uid)
        return user_ids

    def _create_message(
        self,
        channel: JsonDict,
        author: JsonDict,
        body: JsonDict,
        *,
        files: list[str] | None = None,
        webhook_id: str | None = None,
        message_id: int | None = None,
        extra: JsonDict | None = None,
        validate: bool = True,
    ) -> JsonDict:
        """Validate, store and return a message; the caller dispatches it."""
        if validate:
            self._validate_body(body, files=files)
        if channel["type"] in (FORUM, CATEGORY, 2, 13):
            raise ApiError(400, 50008, "Cannot send messages in a non-text channel")
        nonce_key = _nonce_key(author, int(channel["id"]), body)
        if nonce_key in self._nonces:
            return self._messages[self._nonces[nonce_key]]
        referenced = self._referenced_message(body, int(channel["id"]))
        mid = message_id if message_id is not None else self._snowflake()
        message = self._message_payload(mid, channel, author, body, referenced, files or [])
        if webhook_id is not None:
            message["webhook_id"] = webhook_id
        if channel["type"] in THREAD_TYPES:
            message["position"] = channel["total_message_sent"]
            channel["message_count"] += 1
            channel["total_message_sent"] += 1
        if extra:
            message.update(extra)
        self._messages[mid] = message
        self._channel_messages.setdefault(int(channel["id"]), []).append(mid)
        channel["last_message_id"] = str(mid)
        if nonce_key is not None:
            self._nonces[nonce_key] = mid
        return message

    def _referenced_message(self, body: JsonDict, cid: int) -> JsonDict | None:
        """The message a reply points at; None when there is none or it is gone and that is allowed."""
        reference = body.get("message_reference")
        if not reference or not reference.get("message_id"):
            return None
        try:
            return self._message_in(int(reference.get("channel_id") or cid), int(reference["message_id"]))
        except ApiError:
            if reference.get("fail_if_not_exists", True):
                raise invalid_form(
                    field_error("message_reference", "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message")
                ) from None
            return None

    def _message_payload(
        self,
        mid: int,
        channel: JsonDict,
        author: JsonDict,
        body: JsonDict,
        referenced: JsonDict | None,
        files: list[str],
    ) -> JsonDict:
        content = "" if body.get("content") is None else str(body["content"])
        mentions, roles, everyone = self._resolve_mentions(content, body.get("allowed_mentions"), referenced)
        message: JsonDict = {
            "id": str(mid),
            "type": 19 if referenced is not None else 0,
            "channel_id": channel["id"],
            "author": author,
            "content": content,
            "timestamp": now_iso(),
            "edited_timestamp": None,
            "tts": bool(body.get("tts", False)),
            "mention_everyone": everyone,
            "mentions": mentions,
            "mention_roles": roles,
            "attachments": [self._attachment(name) for name in files],
            "embeds": body.get("embeds") or [],
            "components": body.get("components") or [],
            "pinned": False,
            "flags": int(body.get("flags") or 0),
        }
        if body.get("nonce") is not None:
            message["nonce"] = body["nonce"]
        if referenced is not None:
            message["message_reference"] = {
                "type": 0,
                "message_id": referenced["id"],
                "channel_id": referenced["channel_id"],
                "guild_id": channel.get("guild_id"),
            }
            message["referenced_message"] = {k: v for k, v in referenced.items() if k != "referenced_message"}
        return message

    def _attachment(self, filename: str) -> JsonDict:
        aid = self._snowflake()
        url = f"{self.base_url}/attachments/{aid}/{filename}"
        return {"id": str(aid), "filename": filename, "size": 0, "url": url, "proxy_url": url}

    def _edit_message(self, message: JsonDict, body: JsonDict) -> JsonDict:
        self._validate_body(body, creating=False)
        if "content" in body:
            message["content"] = "" if body["content"] is None else str(body["content"])
            # Edits re-parse the content's mentions; without allowed_mentions in the edit they all ping.
            mentions, roles, everyone = self._resolve_mentions(message["content"], body.get("allowed_mentions"), None)
            # Whether the replied-to author was pinged is settled when the reply is sent.
            reply_author = (message.get("referenced_message") or {}).get("author", {}).get("id")
            if any(u["id"] == reply_author for u in message["mentions"]):
                mentions += [u for u in message["mentions"] if u["id"] == reply_author and u not in mentions]
            message.update(mentions=mentions, mention_roles=roles, mention_everyone=everyone)
        for key in ("embeds", "components"):
            if key in body:
                message[key] = body[key] or []
        if "flags" in body and body["flags"] is not None:
            # Only SUPPRESS_EMBEDS can be toggled by an edit; keep the rest.
            message["flags"] = (message["flags"] & ~(1 << 2)) | (int(body["flags"]) & (1 << 2))
        message["edited_timestamp"] = now_iso()
        return message

    def _message_for_session(self, message: JsonDict, session: Session) -> JsonDict:
        channel = self.channels.get(int(message["channel_id"]))
        payload = dict(message)
        if channel is not None and channel.get("guild_id"):
            gid = int(channel["guild_id"])
            payload["guild_id"] = channel["guild_id"]
            if "webhook_id" not in message:
                payload["member"] = self._member(message["author"], gid, with_user=False)
            payload["mentions"] = [{**u, "member": self._member(u, gid, with_user=False)} for u in message["mentions"]]
        own = message["author"]["id"] == str(session.bot_id)
        mentioned = any(u["id"] == str(session.bot_id) for u in message["mentions"])
        in_dm = int(message["channel_id"]) in self._dm_bots
        if not (session.intents & INTENT_MESSAGE_CONTENT) and not own and not mentioned and not in_dm:
            payload.update(content="", embeds=[], attachments=[], components=[])
        return payload

    def _dispatch_message(self, event: str, message: JsonDict) -> None:
        if message["flags"] & FLAG_EPHEMERAL:
            return
        for session in self._channel_sessions(
            int(message["channel_id"]), INTENT_GUILD_MESSAGES, INTENT_DIRECT_MESSAGES
        ):
            session.enqueue_dispatch(event, self._message_for_session(message, session))

    def _delete(self, message: JsonDict) -> None:
        self.deleted_message_ids.add(int(message["id"]))
        channel = self.channels.get(int(message["channel_id"]))
        data = {"id": message["id"], "channel_id": message["channel_id"]}
        if channel is not None and channel.get("guild_id"):
            data["guild_id"] = channel["guild_id"]
        if not message["flags"] & FLAG_EPHEMERAL:
            for session in self._channel_sessions(
                int(message["channel_id"]), INTENT_GUILD_MESSAGES, INTENT_DIRECT_MESSAGES
            ):
                session.enqueue_dispatch("MESSAGE_DELETE", data)

    def _add_reaction(self, message: JsonDict, user_id: int, emoji: str) -> Reaction:
        cid = int(message["channel_id"])
        reaction = Reaction(cid, int(message["id"]), emoji, user_id)
        if reaction in self.reactions:
            return reaction
        self.reactions.append(reaction)
        name, _, emoji_id = emoji.partition(":")
        data: JsonDict = {
            "user_id": str(user_id),
            "channel_id": str(cid),
            "message_id": message["id"],
            "message_author_id": message["author"]["id"],
            "emoji": {"id": emoji_id or None, "name": name},
            "burst": False,
            "type": 0,
        }
        channel = self.channels.get(cid)
        if channel is not None and channel.get("guild_id"):
            data["guild_id"] = channel["guild_id"]
            data["member"] = self._member(self.users[user_id], int(channel["guild_id"]))
        for session in self._channel_sessions(cid, INTENT_GUILD_MESSAGE_REACTIONS, INTENT_DIRECT_MESSAGE_REACTIONS):
            session.enqueue_dispatch("MESSAGE_REACTION_ADD", data)
        return reaction

    # ----------------------------------------------------------------- threads

    def _new_thread(self, parent: JsonDict, owner_id: int, name: str, thread_id: int | None, type: int) -> JsonDict:
        tid = thread_id if thread_id is not None else self._snowflake()
        now = now_iso()
        thread: JsonDict = {
            "id": str(tid),
            "type": type,
            "guild_id": parent["guild_id"],
            "parent_id": parent["id"],
            "owner_id": str(owner_id),
            "name": name,
            "last_message_id": None,
            "message_count": 0,
            "member_count": 1,
            "total_message_sent": 0,
            "rate_limit_per_user": 0,
            "flags": 0,
            "applied_tags": [],
            "thread_metadata": {
                "archived": False,
                "auto_archive_duration": 1440,
                "archive_timestamp": now,
                "locked": False,
                "create_timestamp": now,
            },
        }
        self.channels[tid] = thread
        self._channel_messages.setdefault(tid, [])
        return thread

    def _announce_thread(self, thread: JsonDict) -> None:
        self._broadcast("THREAD_CREATE", {**thread, "newly_created": True}, INTENT_GUILDS)

    def _create_thread_with_message(
        self,
        forum: JsonDict,
        author: JsonDict,
        title: str,
        body: JsonDict,
        *,
        files: list[str] | None = None,
        webhook_id: str | None = None,
    ) -> tuple[JsonDict, JsonDict]:
        self._validate_body(body, files=files)
        # A forum post's starter message has the thread's id, as on Discord.
        thread = self._new_thread(forum, int(author["id"]), title, None, PUBLIC_THREAD)
        thread["applied_tags"] = [str(t) for t in body.get("applied_tags") or []]
        message = self._create_message(
            thread, author, body, files=files, webhook_id=webhook_id, message_id=int(thread["id"])
        )
        forum["last_message_id"] = thread["id"]
        self._announce_thread(thread)
        self._dispatch_message("MESSAGE_CREATE", message)
        return thread, message
