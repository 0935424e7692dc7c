"""What a test sets up (bots, users, groups, channels, faults) and what it inspects afterwards."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable

from tests.fakes.polling import wait_for
from tests.fakes.telegram.models import (
    ApiError,
    BotAccount,
    Call,
    ChatRef,
    ChatState,
    Fault,
    JSONDict,
    SentMessage,
    T,
    UserRef,
    ref_id,
)
from tests.fakes.telegram.routing import Routing
from tests.fakes.telegram.scopes import menu_scopes, scope_key


class TelegramWorld(Routing):
    """Scripted setup and read-only inspection; nothing here is reachable over HTTP."""

    def add_bot(
        self,
        token: str,
        username: str,
        first_name: str,
        can_read_all_group_messages: bool = False,
        *,
        can_join_groups: bool = True,
        supports_inline_queries: bool = False,
        bot_to_bot: bool = False,
    ) -> JSONDict:
        """Register a bot; its id is the number before ":" in the token when there is one."""
        if token in self._bots:
            raise ValueError(f"token already registered: {token}")
        if self._find_bot(username) is not None:
            raise ValueError(f"bot username already registered: {username}")
        prefix = token.split(":", 1)[0]
        bot_id = int(prefix) if prefix.isdigit() else next(self._user_ids)
        if bot_id in self._users:
            raise ValueError(f"id {bot_id} already belongs to {self._users[bot_id]}")
        user: JSONDict = {
            "id": bot_id,
            "is_bot": True,
            "first_name": first_name,
            "username": username,
            "can_join_groups": can_join_groups,
            "can_read_all_group_messages": can_read_all_group_messages,
            "supports_inline_queries": supports_inline_queries,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }
        bot = BotAccount(token=token, user=user, bot_to_bot=bot_to_bot)
        self._bots[token] = bot
        self._users[bot_id] = bot.public
        return copy.deepcopy(bot.public)

    def add_user(self, first_name: str, username: str | None = None, *, last_name: str | None = None) -> JSONDict:
        user: JSONDict = {"id": next(self._user_ids), "is_bot": False, "first_name": first_name}
        if last_name:
            user["last_name"] = last_name
        if username:
            user["username"] = username
        self._users[user["id"]] = user
        return copy.deepcopy(user)

    def add_group(
        self,
        title: str,
        admins: Iterable[UserRef] = (),
        members: Iterable[UserRef] = (),
        *,
        creator: UserRef | None = None,
    ) -> JSONDict:
        """A supergroup. Bots must be in ``members`` or ``admins`` to see or post anything."""
        chat_id = -(1_002_000_000_000 + next(self._group_ids))
        state = ChatState(info={"id": chat_id, "type": "supergroup", "title": title})
        self._chats[chat_id] = state
        for ref in admins:
            self.add_member(chat_id, ref, admin=True)
        for ref in members:
            self.add_member(chat_id, ref)
        if creator is not None:
            state.creator = self._known_user_id(creator)
            state.members.add(state.creator)
        return copy.deepcopy(state.info)

    def add_channel(
        self, title: str, discussion_group: ChatRef | None = None, admins: Iterable[UserRef] = ()
    ) -> JSONDict:
        """A channel; bots can only be in one as admins, and get its posts as ``channel_post``."""
        chat_id = -(1_001_000_000_000 + next(self._group_ids))
        state = ChatState(info={"id": chat_id, "type": "channel", "title": title})
        self._chats[chat_id] = state
        for ref in admins:
            self.add_member(chat_id, ref, admin=True)
        if discussion_group is not None:
            group = self._group(discussion_group)
            state.linked_chat_id = group.id
            group.linked_chat_id = chat_id
        return copy.deepcopy(state.info)

    def add_member(self, chat: ChatRef, user: UserRef, *, admin: bool = False) -> None:
        state = self._group(chat)
        user_id = self._known_user_id(user)
        state.members.add(user_id)
        state.kicked.discard(user_id)
        if admin:
            state.admins.add(user_id)

    # --- fault injection ---

    def fail_next(
        self,
        method: str,
        chat_id: ChatRef | str | None = None,
        error_code: int = 429,
        description: str | None = None,
        retry_after: int = 2,
        *,
        bot: str | None = None,
    ) -> None:
        """Make the next matching call fail once. ``bot`` is a username or token."""
        if description is None:
            description = {
                429: f"Too Many Requests: retry after {retry_after}",
                400: "Bad Request",
                403: "Forbidden",
                409: "Conflict",
                500: "Internal Server Error",
                502: "Bad Gateway",
            }.get(error_code, "Error")
        parameters = {"retry_after": retry_after} if error_code == 429 else None
        target = chat_id if chat_id is None or isinstance(chat_id, str) else ref_id(chat_id)
        self._faults.append(Fault(method.lower(), target, bot, ApiError(error_code, description, parameters)))

    def block_chat(self, chat_id: ChatRef, bot_token: str) -> None:
        """The bot is kicked from the group (or blocked by the user, for a private chat)."""
        bot = self._bot(bot_token)
        target = ref_id(chat_id)
        if target > 0:
            self._blocked_by_user.add((bot.id, target))
        else:
            self._group(target).kicked.add(bot.id)

    # --- inspection ---

    def sent(self, chat_id: ChatRef | None = None) -> list[SentMessage]:
        """Messages bots sent, oldest first, optionally in one chat."""
        if chat_id is None:
            return list(self._sent)
        target = ref_id(chat_id)
        return [s for s in self._sent if s.chat_id == target]

    def history(self, chat: ChatRef) -> list[JSONDict]:
        """Every message stored in a group or channel, humans' and bots', oldest first."""
        return copy.deepcopy(self._history.get((ref_id(chat), 0), []))

    def delivered(self, bot: str) -> list[JSONDict]:
        """Every update ever queued for a bot (username or token), fetched or not."""
        return copy.deepcopy(self._bot(bot).delivered)

    def calls_to(self, method: str, bot: str | None = None) -> list[Call]:
        wanted = self._bot(bot) if bot else None
        return [
            c for c in self.calls if c.method.lower() == method.lower() and (wanted is None or c.token == wanted.token)
        ]

    def reactions_on(self, chat: ChatRef, message_id: int, *, dm_bot: str | None = None) -> dict[str, list[str]]:
        """Bot username -> emoji it set on a message."""
        conv_bot = self._bot(dm_bot).id if dm_bot else 0
        key = (ref_id(chat), conv_bot, message_id)
        return {
            username: [str(r.get("emoji", r.get("custom_emoji_id", ""))) for r in reactions]
            for username, reactions in self._reactions.get(key, {}).items()
        }

    def commands_of(self, bot: str) -> dict[str, list[JSONDict]]:
        """Stored command lists keyed by ``"<scope json>|<language>"``."""
        return copy.deepcopy(self._bot(bot).commands)

    def menu_for(self, bot: str, chat: ChatRef, user: UserRef | None = None, language: str = "") -> list[str]:
        """The command names a client shows in ``chat`` (a private chat: the user's id) for ``user``,
        resolved through the scopes the way Telegram documents ("Determining list of commands")."""
        state = self._bot(bot)
        chat_id = ref_id(chat)
        group = self._chats.get(chat_id)
        for scope in menu_scopes(chat_id, group, ref_id(user) if user is not None else None):
            for lang in ([language] if language else []) + [""]:
                commands = state.commands.get(scope_key(scope, lang))
                if commands is not None:
                    return [str(c["command"]) for c in commands]
        return []

    async def wait_for(
        self,
        predicate: Callable[[], T],
        timeout: float = 5.0,  # noqa: ASYNC109 - a polling deadline, not a cancel scope
        interval: float = 0.01,
    ) -> T:
        """Poll ``predicate`` until it returns something truthy, and return that."""
        return await wait_for(predicate, timeout, interval)
