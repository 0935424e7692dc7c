"""What every open page sees: the room's messages per channel (a short backlog for a page that opens)
and the live events pushed to each page's stream (server-sent events).

An event is a JSON-ready dict; pages render it with textContent only, so whatever text a person or
a model wrote arrives as data, never as markup. A private event (a command's answer for one person)
goes to that person's pages only and is not kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

# Events a slow page may fall behind by before its stream is closed (it reconnects and reloads the backlog).
QUEUE_LIMIT = 1000


@dataclass(eq=False)
class Stream:
    """One open page: the events queued for it and whose page it is."""

    user_id: str
    # A signed-in operator's page also gets the decision log.
    operator: bool = False
    # Events as they go on the wire (server-sent events); None ends the stream.
    queue: asyncio.Queue[bytes | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))

    def push(self, event: bytes) -> bool:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            return False
        return True


class Hub:
    def __init__(self, backlog: int = 200) -> None:
        self.backlog = backlog
        self._channels: dict[str, deque[dict[str, Any]]] = {}
        # Every kept message by id, so a streamed update or a like changes what a page opened later sees.
        self._messages: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.streams: set[Stream] = set()

    def open(self, user_id: str, *, operator: bool = False) -> Stream:
        stream = Stream(user_id, operator)
        self.streams.add(stream)
        return stream

    def close(self, stream: Stream) -> None:
        self.streams.discard(stream)

    def close_all(self) -> None:
        for stream in list(self.streams):
            with contextlib.suppress(asyncio.QueueFull):
                stream.queue.put_nowait(None)
        self.streams.clear()

    def messages(self, channel: str) -> list[dict[str, Any]]:
        return list(self._channels.get(channel, ()))

    def posts(self, feed: str) -> list[dict[str, Any]]:
        """A feed's posts, each with its thread's messages."""
        return [{**post, "thread": self.messages(post["channel"])} for post in self.messages(feed)]

    def written_by(self, user_id: str) -> list[str]:
        """Ids of the kept messages a person wrote (/forget removes them from the pages too)."""
        return [mid for mid, m in self._messages.items() if m["author"].get("user") == user_id]

    def message(self, message_id: str) -> dict[str, Any] | None:
        return self._messages.get(message_id)

    def add(self, message: dict[str, Any], *, listed_in: str | None = None) -> None:
        """Keep a message (in its channel, or `listed_in` for a feed post) and push it to every page."""
        channel = listed_in or message["channel"]
        kept = self._channels.setdefault(channel, deque(maxlen=self.backlog))
        if len(kept) == kept.maxlen:
            self._evict(kept[0])
        kept.append(message)
        self._messages[message["id"]] = message
        self.publish({"type": "message", "message": message})

    def _evict(self, message: dict[str, Any]) -> None:
        """Out of the backlog; a post takes its whole thread with it."""
        self._messages.pop(message["id"], None)
        if message.get("post"):
            for m in self._channels.pop(message["channel"], ()):
                self._messages.pop(m["id"], None)

    @property
    def operators(self) -> bool:
        """Whether an operator page is open (the decision log is built only for one)."""
        return any(s.operator for s in self.streams)

    def update(self, message_id: str, **changes: Any) -> None:
        message = self._messages.get(message_id)
        if message is not None:
            message.update(changes)
        self.publish({"type": "update", "id": message_id, **changes})

    def remove(self, message_id: str) -> None:
        message = self._messages.pop(message_id, None)
        if message is not None:
            for kept in self._channels.values():
                if message in kept:
                    kept.remove(message)
        self.publish({"type": "remove", "id": message_id})

    def react(self, message_id: str, emoji: str, by: str) -> None:
        message = self._messages.get(message_id)
        if message is not None:
            message.setdefault("reactions", []).append({"emoji": emoji, "by": by})
        self.publish({"type": "react", "id": message_id, "emoji": emoji, "by": by})

    def publish(self, event: dict[str, Any], to_user: str | None = None, *, operators: bool = False) -> None:
        # Serialised now, once for every page: a message changed later (a like, more text) must not
        # reach a page that has not read this event yet in its later form.
        wire = f"data: {json.dumps(event, ensure_ascii=False)}\n\n".encode()
        for stream in list(self.streams):
            if to_user is not None and stream.user_id != to_user:
                continue
            if operators and not stream.operator:
                continue
            if not stream.push(wire):
                # Too far behind: end its stream; the page reconnects and reads the backlog again.
                self.streams.discard(stream)
                with contextlib.suppress(asyncio.QueueFull):
                    stream.queue.get_nowait()
                    stream.queue.put_nowait(None)
