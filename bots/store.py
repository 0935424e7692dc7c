"""The Store protocol (history, dedupe, opt-outs, mutes, first contacts, token usage) and its
in-memory implementation."""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Turn:
    """One message in a conversation's history: a human's, or one of the fleet's own."""

    speaker: str  # display name
    text: str
    at: float
    user_id: str = ""  # platform user id of a human speaker ("" for personas)
    persona_id: str | None = None
    message_id: str = ""

    def to_dict(self) -> dict[str, object]:
        return {
            "speaker": self.speaker,
            "text": self.text,
            "at": self.at,
            "user_id": self.user_id,
            "persona_id": self.persona_id,
            "message_id": self.message_id,
        }

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> Turn:
        return cls(
            speaker=str(d["speaker"]),
            text=str(d["text"]),
            at=float(d["at"]),  # type: ignore[arg-type]
            user_id=str(d.get("user_id") or ""),
            persona_id=d.get("persona_id") or None,  # type: ignore[arg-type]
            message_id=str(d.get("message_id") or ""),
        )


class Store(Protocol):
    async def first_seen(self, key: str, ttl: float, now: float) -> bool:
        """True the first time key is offered within ttl seconds (event dedupe)."""
        ...

    async def append(self, conversation: str, turn: Turn) -> None: ...

    async def history(self, conversation: str, limit: int) -> list[Turn]:
        """The newest `limit` turns, oldest first."""
        ...

    async def forget_user(self, platform: str, user_id: str) -> int:
        """Delete every stored turn of that user; returns how many were removed."""
        ...

    async def prune(self, now: float) -> int:
        """Delete history older than the retention period; returns how many turns were removed."""
        ...

    async def set_opt_out(self, platform: str, user_id: str, opted_out: bool) -> None: ...

    async def is_opted_out(self, platform: str, user_id: str) -> bool: ...

    async def set_muted(self, conversation: str, persona_id: str, muted: bool) -> None: ...

    async def muted(self, conversation: str) -> frozenset[str]: ...

    async def followers(self, platform: str, user_id: str) -> tuple[str, ...] | None:
        """The personas a user chose to follow them in feeds (None: the channel's default set)."""
        ...

    async def set_followers(self, platform: str, user_id: str, persona_ids: tuple[str, ...] | None) -> None: ...

    async def first_contact(self, platform: str, persona_id: str, user_id: str, now: float) -> bool:
        """True (and `now` recorded) the first time persona_id addresses user_id on platform.

        /forget deletes these records too, so a forgotten user is told again."""
        ...

    async def add_usage(self, day: str, deltas: Mapping[str, int]) -> dict[str, int]:
        """Add token counts to the totals of one UTC day; returns every total of that day.

        Keys are "fleet", "p:<persona>" and "u:<platform>:<user>"; processes sharing a store
        thereby share one budget."""
        ...

    async def close(self) -> None: ...


class MemoryStore:
    def __init__(
        self,
        history_size: int = 50,
        max_conversations: int = 10_000,
        retention_seconds: float | None = None,
    ) -> None:
        self.history_size = history_size
        self.max_conversations = max_conversations
        self.retention_seconds = retention_seconds
        self._history: OrderedDict[str, deque[Turn]] = OrderedDict()
        self._seen: dict[str, float] = {}
        self._seen_sweep = 0.0
        self._opt_out: set[tuple[str, str]] = set()
        self._muted: dict[str, set[str]] = {}
        # (platform, user) -> persona -> when first told; keyed by user so /forget is one delete.
        self._told: dict[tuple[str, str], dict[str, float]] = {}
        self._usage: dict[str, dict[str, int]] = {}
        self._followers: dict[tuple[str, str], tuple[str, ...]] = {}

    async def first_seen(self, key: str, ttl: float, now: float) -> bool:
        expires = self._seen.get(key)
        if expires is not None and expires > now:
            return False
        self._seen[key] = now + ttl
        if now - self._seen_sweep > ttl:
            self._seen_sweep = now
            for k in [k for k, exp in self._seen.items() if exp <= now]:
                del self._seen[k]
        return True

    async def append(self, conversation: str, turn: Turn) -> None:
        turns = self._history.get(conversation)
        if turns is None:
            turns = self._history[conversation] = deque(maxlen=self.history_size)
            # Bounded in both directions: turns per conversation and conversations overall.
            while len(self._history) > self.max_conversations:
                self._history.popitem(last=False)
        else:
            self._history.move_to_end(conversation)
        turns.append(turn)
        if self.retention_seconds is not None:
            _drop_before(turns, turn.at - self.retention_seconds)

    async def history(self, conversation: str, limit: int) -> list[Turn]:
        turns = self._history.get(conversation)
        if not turns or limit <= 0:
            return []
        return list(turns)[-limit:]

    async def prune(self, now: float) -> int:
        """Delete turns older than the retention period, also in conversations nobody writes to."""
        if self.retention_seconds is None:
            return 0
        cutoff = now - self.retention_seconds
        removed = 0
        for conv in list(self._history):
            turns = self._history[conv]
            removed += _drop_before(turns, cutoff)
            if not turns:
                del self._history[conv]
        return removed

    async def forget_user(self, platform: str, user_id: str) -> int:
        removed = 0
        prefix = f"{platform}:"
        for conv, turns in self._history.items():
            if not conv.startswith(prefix):
                continue
            kept = [t for t in turns if t.user_id != user_id]
            removed += len(turns) - len(kept)
            if len(kept) != len(turns):
                turns.clear()
                turns.extend(kept)
        self._told.pop((platform, user_id), None)
        return removed

    async def set_opt_out(self, platform: str, user_id: str, opted_out: bool) -> None:
        if opted_out:
            self._opt_out.add((platform, user_id))
        else:
            self._opt_out.discard((platform, user_id))

    async def is_opted_out(self, platform: str, user_id: str) -> bool:
        return (platform, user_id) in self._opt_out

    async def set_muted(self, conversation: str, persona_id: str, muted: bool) -> None:
        if muted:
            self._muted.setdefault(conversation, set()).add(persona_id)
        else:
            self._muted.get(conversation, set()).discard(persona_id)

    async def muted(self, conversation: str) -> frozenset[str]:
        return frozenset(self._muted.get(conversation, ()))

    async def followers(self, platform: str, user_id: str) -> tuple[str, ...] | None:
        return self._followers.get((platform, user_id))

    async def set_followers(self, platform: str, user_id: str, persona_ids: tuple[str, ...] | None) -> None:
        if persona_ids is None:
            self._followers.pop((platform, user_id), None)
        else:
            self._followers[(platform, user_id)] = tuple(persona_ids)

    async def first_contact(self, platform: str, persona_id: str, user_id: str, now: float) -> bool:
        told = self._told.setdefault((platform, user_id), {})
        if persona_id in told:
            return False
        told[persona_id] = now
        return True

    async def first_told(self, platform: str, persona_id: str, user_id: str) -> float | None:
        return self._told.get((platform, user_id), {}).get(persona_id)

    async def add_usage(self, day: str, deltas: Mapping[str, int]) -> dict[str, int]:
        totals = self._usage.setdefault(day, {})
        for key, n in deltas.items():
            totals[key] = totals.get(key, 0) + n
        # Only today and yesterday matter to anyone; older days would only grow.
        for old in sorted(self._usage)[:-2]:
            del self._usage[old]
        return dict(totals)

    async def close(self) -> None:
        return None


def _drop_before(turns: deque[Turn], cutoff: float) -> int:
    # Turns are appended in time order, so the old ones are all at the left end.
    removed = 0
    while turns and turns[0].at < cutoff:
        turns.popleft()
        removed += 1
    return removed
