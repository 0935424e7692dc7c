"""Writes that must reach Redis but did not when they were made: the FallbackStore's journal.

Privacy and moderation choices and token usage (budgets are shared) are journaled when their Redis
write fails or is skipped. Two kinds of failure leave an entry:

- an outage: the health probe replays the journal when Redis answers again, before it is trusted;
- Redis slow but up (a call timed out on a queue, or was skipped in the slow window after one): no
  recovery follows, so the store drains the journal in the background once Redis is usable again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from bots.state.redis.store import RedisStore

K = TypeVar("K")
V = TypeVar("V")


@dataclass(slots=True)
class Journal:
    """Latest state wins per key and usage is summed per key, so the journal is bounded by the users,
    conversations and usage keys touched, never by the number of writes.

    An entry leaves only once Redis has it, and only if no newer write to the same key was journaled
    while it was being replayed (that one is replayed next time). While a key has an entry, a later
    write of that key journals its value too even when it reached Redis directly: the entry would
    otherwise put the older value back when it is replayed.
    """

    opt_out: dict[tuple[str, str], bool] = field(default_factory=dict)
    forget: set[tuple[str, str]] = field(default_factory=set)
    muted: dict[tuple[str, str], bool] = field(default_factory=dict)
    followers: dict[tuple[str, str], tuple[str, ...] | None] = field(default_factory=dict)
    usage: dict[str, dict[str, int]] = field(default_factory=dict)
    # Erasures of relationship memory: (person, owner or "" for all) and accounts to unlink.
    notes_forget: set[tuple[str, str]] = field(default_factory=set)
    unlinks: set[tuple[str, str]] = field(default_factory=set)
    # Care records (platform, user, conversation) -> (until, when written): fallback_care.py.
    care: dict[tuple[str, str, str], tuple[float, float]] = field(default_factory=dict)
    limit: int = 100_000

    def __len__(self) -> int:
        sizes = (self.opt_out, self.forget, self.muted, self.followers, self.notes_forget, self.unlinks, self.care)
        return sum(len(x) for x in sizes) + sum(len(d) for d in self.usage.values())

    async def replay(
        self,
        primary: RedisStore,
        forget: Callable[[str, str], Awaitable[int]],
        usage_seen: Callable[[str, dict[str, int]], None],
    ) -> None:
        """Write every entry into Redis; raises on the first failure, keeping what did not land."""
        for key, opted in list(self.opt_out.items()):
            await primary.set_opt_out(*key, opted)
            _landed(self.opt_out, key, opted)
        for platform, user in list(self.forget):
            await forget(platform, user)
            self.forget.discard((platform, user))
        for person, owner in list(self.notes_forget):
            await primary.forget_notes(person, owner or None)
            self.notes_forget.discard((person, owner))
        for platform, user in list(self.unlinks):
            await primary.unlink(platform, user)
            self.unlinks.discard((platform, user))
        for who, (until, at) in list(self.care.items()):
            # Written with the time it was decided: its expiry then counts from then, and a record
            # that lapsed during the outage is ignored by every reader (Redis drops it soon after).
            await primary.set_care(who[0], who[1], who[2], until, at)
            _landed(self.care, who, (until, at))
        for key, muted in list(self.muted.items()):
            await primary.set_muted(*key, muted)
            _landed(self.muted, key, muted)
        for key, chosen in list(self.followers.items()):
            await primary.set_followers(*key, chosen)
            _landed(self.followers, key, chosen)
        for day, deltas in list(self.usage.items()):
            sent = dict(deltas)
            usage_seen(day, await primary.add_usage(day, sent))
            self._usage_landed(day, sent)

    def add_care(self, key: tuple[str, str, str], until: float, now: float) -> None:
        held = self.care.get(key)
        # The latest quiet time wins, as in the store itself.
        self.care[key] = (until, now) if held is None or until > held[0] else held

    def _usage_landed(self, day: str, sent: dict[str, int]) -> None:
        # Usage added while the replay waited on Redis stays for next time.
        pending = self.usage.get(day, {})
        for key, n in sent.items():
            left = pending.get(key, 0) - n
            if left:
                pending[key] = left
            else:
                pending.pop(key, None)
        if not pending:
            self.usage.pop(day, None)


def _landed(table: dict[K, V], key: K, value: V) -> None:
    if key in table and table[key] == value:
        del table[key]
