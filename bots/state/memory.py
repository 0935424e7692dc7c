"""In-process state: the memory Store and the memory RateLimiter (one process, nothing shared)."""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bots.core.ports import ALLOWED, CAPPED, Rate, Turn, Verdict
from bots.state.care import MemoryCare
from bots.state.gcra import gcra_check
from bots.state.notes import MemoryNotes


@dataclass(frozen=True, slots=True)
class Choices:
    """People's and moderators' standing choices: what must outlive the loss of a shared store."""

    opted_out: frozenset[tuple[str, str]] = frozenset()  # (platform, user id)
    muted: tuple[tuple[str, frozenset[str]], ...] = ()  # (conversation, persona ids)
    followers: tuple[tuple[str, str, tuple[str, ...]], ...] = ()  # (platform, user id, persona ids)

    def __bool__(self) -> bool:
        return bool(self.opted_out or self.muted or self.followers)


class MemoryStore(MemoryNotes, MemoryCare):
    def __init__(
        self,
        history_size: int = 50,
        max_conversations: int = 10_000,
        retention_seconds: float | None = None,
        max_seen: int = 100_000,
    ) -> None:
        self.history_size = history_size
        self.max_conversations = max_conversations
        self.retention_seconds = retention_seconds
        self.max_seen = max_seen
        self._history: OrderedDict[str, deque[Turn]] = OrderedDict()
        self._seen: dict[str, float] = {}
        self._seen_sweep = 0.0
        self._opt_out: set[tuple[str, str]] = set()
        self._muted: dict[str, set[str]] = {}
        # (platform, user) -> persona -> when first told; keyed by user so /forget is one delete.
        self._told: dict[tuple[str, str], dict[str, float]] = {}
        self._usage: dict[str, dict[str, int]] = {}
        self._daily: dict[str, dict[str, dict[str, int]]] = {}
        self._followers: dict[tuple[str, str], tuple[str, ...]] = {}

    async def first_seen(self, key: str, ttl: float, now: float) -> bool:
        expires = self._seen.get(key)
        if expires is not None and expires > now:
            return False
        self._seen.pop(key, None)  # re-inserted at the end: the dict stays in order of offer
        self._seen[key] = now + ttl
        if now - self._seen_sweep > ttl:
            self._seen_sweep = now
            for k in [k for k, exp in self._seen.items() if exp <= now]:
                del self._seen[k]
        # A flood of distinct events must not grow memory without bound: the oldest offers go first.
        while len(self._seen) > self.max_seen:
            del self._seen[next(iter(self._seen))]
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
        removed = self.prune_notes(now)
        for conv in list(self._history):
            turns = self._history[conv]
            removed += _drop_before(turns, cutoff)
            if not turns:
                del self._history[conv]
        return removed

    async def forget_user(self, platform: str, user_id: str) -> int:
        if not user_id:
            return 0  # "" is every persona's turn, not a person
        removed = 0
        prefix = f"{platform}:"
        for conv, turns in self._history.items():
            if not conv.startswith(prefix):
                continue
            kept = _without(turns, user_id)
            removed += len(turns) - len(kept)
            if len(kept) != len(turns):
                turns.clear()
                turns.extend(kept)
        self._told.pop((platform, user_id), None)
        for counters in self._daily.values():
            counters.pop(f"use:{platform}:{user_id}", None)  # healthy-use counters (safety/desk.py)
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

    async def add_daily(self, day: str, key: str, deltas: Mapping[str, int]) -> dict[str, int]:
        counters = self._daily.setdefault(day, {}).setdefault(key, {})
        for name, n in deltas.items():
            counters[name] = counters.get(name, 0) + n
        for old in sorted(self._daily)[:-2]:
            del self._daily[old]
        return dict(counters)

    def choices(self) -> Choices:
        """Every opt-out, mute and follower choice held here, to write back into a store that lost them."""
        return Choices(
            opted_out=frozenset(self._opt_out),
            muted=tuple((conv, frozenset(pids)) for conv, pids in self._muted.items() if pids),
            followers=tuple((platform, user, chosen) for (platform, user), chosen in self._followers.items()),
        )

    async def close(self) -> None:
        return None


def _drop_before(turns: deque[Turn], cutoff: float) -> int:
    # Turns are appended in time order, so the old ones are all at the left end.
    removed = 0
    while turns and turns[0].at < cutoff:
        turns.popleft()
        removed += 1
    return removed


class MemoryRateLimiter:
    """In-process GCRA; atomic because nothing awaits between check and consume."""

    def __init__(self, max_keys: int = 200_000) -> None:
        self._tat: dict[str, float] = {}
        self._expiry_sweep = 0.0
        self.max_keys = max_keys

    async def acquire(self, candidates: Sequence[Sequence[Rate]], max_grants: int, now: float) -> list[Verdict]:
        return self.acquire_now(candidates, max_grants, now)

    def acquire_now(self, candidates: Sequence[Sequence[Rate]], max_grants: int, now: float) -> list[Verdict]:
        tat = self._tat
        out: list[Verdict] = []
        granted = 0
        for rates in candidates:
            if granted >= max_grants:
                out.append(CAPPED)
                continue
            updates: dict[str, float] = {}
            verdict = ALLOWED
            for rate in rates:
                ok, new_tat, retry = gcra_check(updates.get(rate.key, tat.get(rate.key)), rate, now)
                if not ok:
                    verdict = Verdict(False, rate.label, retry)
                    break
                updates[rate.key] = new_tat
            if verdict.allowed:
                tat.update(updates)
                granted += 1
            out.append(verdict)
        if now - self._expiry_sweep > 300:
            self._sweep(now)
        return out

    def remember(self, now: float, ahead: Mapping[str, float]) -> None:
        """Take tats decided elsewhere (Redis): each key's tat is `ahead` seconds after `now`, and a
        key 0 ahead no longer matters. A fallback that starts from these keeps the cooldowns and
        limits granted before it took over."""
        tat = self._tat
        for key, seconds in ahead.items():
            if seconds > 0:
                tat[key] = now + seconds
            else:
                tat.pop(key, None)
        if len(tat) > self.max_keys:
            self._sweep(now)

    def _sweep(self, now: float) -> None:
        # A tat in the past carries no information: dropping it keeps memory bounded by active keys.
        self._expiry_sweep = now
        for key in [k for k, v in self._tat.items() if v < now]:
            del self._tat[key]
        if len(self._tat) > self.max_keys:
            # Still too many live keys: forget those that lapse soonest, the least to lose.
            for key in sorted(self._tat, key=self._tat.__getitem__)[: len(self._tat) - self.max_keys]:
                del self._tat[key]

    async def close(self) -> None:
        return None


def _without(turns: Sequence[Turn], user_id: str) -> list[Turn]:
    """The turns minus the user's own and the fleet's replies to them (and replies to those).

    Turns are in time order, so one pass finds every reply: a reply always follows what it answers.
    """
    gone: set[str] = set()
    kept: list[Turn] = []
    for t in turns:
        if t.user_id == user_id or (t.persona_id and t.reply_to and t.reply_to in gone):
            if t.message_id:
                gone.add(t.message_id)
        else:
            kept.append(t)
    return kept
