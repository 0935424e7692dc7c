"""The photos of recent messages, kept in memory (references, or the bytes of an upload) until a
reply to them is written: history itself keeps only a placeholder.

Bounded in count and age, so it never holds more than a few hundred messages' worth; /forget drops
a person's entries at once. Not shared between processes: the process that claimed a message writes
its replies, and one that takes a claim over answers from the placeholder.
"""

from __future__ import annotations

from collections import OrderedDict

from bots.core.events import ImagePart, Message

# Replies are written within minutes of the photo; a day is generous and still far inside retention.
MAX_AGE = 86_400.0
MAX_ENTRIES = 500
# Uploads a platform handed over as bytes (a web room's) count against this; references cost nothing.
MAX_BYTES = 64_000_000
# Prepared data URLs (a few hundred kB each) for the messages being answered right now: a post's
# comments are written one after another and would otherwise fetch the same photo each time.
MAX_PREPARED = 16


class Gallery:
    def __init__(self, max_entries: int = MAX_ENTRIES, max_age: float = MAX_AGE, max_bytes: int = MAX_BYTES) -> None:
        self.max_entries = max_entries
        self.max_age = max_age
        self.max_bytes = max_bytes
        self.bytes = 0
        # message key -> (when, platform, author user id, photos)
        self._entries: OrderedDict[str, tuple[float, str, str, tuple[ImagePart, ...]]] = OrderedDict()
        self._prepared: OrderedDict[str, tuple[str, ...]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, msg: Message, now: float) -> None:
        if not msg.images:
            return
        self._drop(msg.key)
        self._entries[msg.key] = (now, msg.platform, msg.author.id, msg.images)
        self.bytes += _size(msg.images)
        self.prune(now)

    def get(self, key: str, now: float) -> tuple[ImagePart, ...]:
        entry = self._entries.get(key)
        if entry is None or entry[0] < now - self.max_age:
            return ()
        return entry[3]

    def prune(self, now: float) -> None:
        while self._entries and (
            len(self._entries) > self.max_entries
            or self.bytes > self.max_bytes
            or next(iter(self._entries.values()))[0] < now - self.max_age
        ):
            self._drop(next(iter(self._entries)))

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.bytes -= _size(entry[3])
        self._prepared.pop(key, None)

    def prepared(self, key: str) -> tuple[str, ...] | None:
        return self._prepared.get(key) if key in self._entries else None

    def keep_prepared(self, key: str, urls: tuple[str, ...]) -> None:
        if key not in self._entries:
            return
        self._prepared[key] = urls
        self._prepared.move_to_end(key)
        while len(self._prepared) > MAX_PREPARED:
            self._prepared.popitem(last=False)

    def forget_user(self, platform: str, user_id: str) -> int:
        gone = [k for k, (_, p, u, _) in self._entries.items() if p == platform and u == user_id]
        for key in gone:
            self._drop(key)
        return len(gone)


def _size(parts: tuple[ImagePart, ...]) -> int:
    return sum(len(p.data) for p in parts)
