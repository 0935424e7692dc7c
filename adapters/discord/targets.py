"""Where one reply goes: an account's channel, a channel's webhook under a persona's name, or the
host's DM with a persona's name in bold."""

from __future__ import annotations

from typing import Protocol

import discord

from adapters.discord.common import HOST, LIMIT, Where, nobody
from adapters.discord.webhooks import Webhooks


class Target(Protocol):
    key: tuple[str, int]  # (account, channel) for permission bookkeeping
    # The key whose refusal also silences this target: a thread's parent, whose webhook it posts through.
    scope: tuple[str, int]
    limit: int

    async def typing(self) -> None: ...

    async def prepare(self) -> None:
        """Get what posting needs (a webhook), so a refusal shows before the LLM is paid for."""
        ...

    async def post(self, text: str, first: bool) -> int: ...

    async def edit(self, message_id: int, text: str) -> None: ...

    async def delete(self, message_id: int) -> None: ...


class AccountTarget:
    def __init__(
        self,
        account: str,
        client: discord.Client,
        channel: int,
        reference: discord.MessageReference | None,
        mentions: discord.AllowedMentions,
    ) -> None:
        self.key = self.scope = (account, channel)
        self.limit = LIMIT
        self._client = client
        self._channel = client.get_partial_messageable(channel)
        self._reference = reference
        self._mentions = mentions

    async def typing(self) -> None:
        await self._client.http.send_typing(self._channel.id)

    async def prepare(self) -> None:
        return None

    async def post(self, text: str, first: bool) -> int:
        reference = self._reference if first else None
        sent = await self._channel.send(text, reference=reference, allowed_mentions=self._mentions)  # type: ignore[arg-type]
        return sent.id

    async def edit(self, message_id: int, text: str) -> None:
        await self._channel.get_partial_message(message_id).edit(content=text, allowed_mentions=self._mentions)

    async def delete(self, message_id: int) -> None:
        await self._channel.get_partial_message(message_id).delete()


class WebhookTarget:
    """Webhooks cannot reply, so a reply to someone opens with a small line naming them."""

    def __init__(
        self,
        webhooks: Webhooks,
        host: discord.Client,
        channel: int,
        where: Where,
        username: str,
        avatar: str | None,
        mentions: discord.AllowedMentions,
        header: str,
    ) -> None:
        self.key = (HOST, channel)
        self.limit = LIMIT - (len(header) + 1 if header else 0)
        self._webhooks = webhooks
        self._host = host
        self._channel = channel
        self._parent = where.parent if where.kind == "thread" and where.parent else channel
        self._thread = discord.Object(channel) if self._parent != channel else None
        self.scope = (HOST, self._parent)
        self._username = username
        self._avatar = avatar
        self._mentions = mentions
        self._header = header
        self._first: int | None = None

    def _content(self, text: str, first: bool) -> str:
        return f"{self._header}\n{text}" if first and self._header else text

    async def typing(self) -> None:
        await self._host.http.send_typing(self._channel)

    async def prepare(self) -> None:
        await self._webhooks.get(self._parent)

    async def post(self, text: str, first: bool) -> int:
        content = self._content(text, first)
        sent = await self._webhooks.send(
            self._parent, self._thread, content, self._username, self._avatar, self._mentions
        )
        if first:
            self._first = sent
        return sent

    async def edit(self, message_id: int, text: str) -> None:
        hook = await self._webhooks.get(self._parent)
        content = self._content(text, message_id == self._first)
        thread = self._thread or discord.utils.MISSING
        await hook.edit_message(message_id, content=content, allowed_mentions=self._mentions, thread=thread)

    async def delete(self, message_id: int) -> None:
        hook = await self._webhooks.get(self._parent)
        await hook.delete_message(message_id, thread=self._thread or discord.utils.MISSING)


class DMTarget(AccountTarget):
    """A webhook persona answering in the host's DMs, where there are no webhooks: name in bold."""

    def __init__(self, client: discord.Client, channel: int, name: str) -> None:
        super().__init__(HOST, client, channel, None, nobody())
        self._prefix = f"**{name}:** "
        self.limit = LIMIT - len(self._prefix)

    async def post(self, text: str, first: bool) -> int:
        return await super().post(self._prefix + text, first)

    async def edit(self, message_id: int, text: str) -> None:
        await super().edit(message_id, self._prefix + text)
