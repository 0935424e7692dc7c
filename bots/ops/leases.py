"""Account leases: several `botfleet run` processes on one Redis split the platform accounts.

Only one process may receive on an account (Telegram allows one getUpdates consumer per token; two
Discord gateway sessions would answer twice), so each account's receiving connection is held under a
lease: a Redis key set only if absent (NX) with an expiry (PX), renewed while held. Processes that serve the same set
of accounts register as members of one pool, and each takes its fair share, ceil(accounts /
members), so that two processes split the accounts instead of the first one taking everything.

One Lua script per tick does all of it atomically with the server's clock: heartbeat the membership,
renew what this process holds, hand back what it releases, take free accounts up to the share, and
report every lease's holder. Connecting and disconnecting (which can take seconds) run beside the
ticks, never inside them, so renewals are never late because a platform is slow.

Leases fail closed, but not at the first late renewal. A renewal sets the lease to expire one lease
time after Redis ran it, which is after this process sent it: so no other process can take the
account before (renewal sent + lease time), whatever happened since. A process that cannot renew
keeps receiving, retrying quickly, until that moment minus a safety margin (the time disconnecting
may take), and stops receiving itself only then; a Redis that freezes for a while and comes back
with the lease still ours costs no reconnect (Discord counts every new session against a daily
limit). When a process dies, its leases and its membership expire together and the others take the
accounts over within the lease time (they wake up for it). A Redis that lost its data (restarted
without persistence, or brand new) lets nobody take a free account for one lease time, while the
processes that still receive re-assert their leases; so the very first `botfleet run` on an empty
Redis starts receiving after one lease time.

Before connecting, an account whose platform limits session starts is checked against that budget
(bots/ops/budget.py), keeping a reserve for recovery.

Redis keys (prefix `botfleet:` by default):
- `lease:{account}`: string, the holder's identity; PX lease time, renewed every lease time / 10.
- `members:{pool}`: zset of the processes serving one set of accounts, score = membership expiry
  (ms); PX twice the lease time.
- `accounts`: zset of known accounts (for `botfleet status`), score = expiry; PX twice the lease time.
- `epoch`: when this Redis started holding leases (ms); no TTL.
- `identify:{account}`: hash of connects made in the platform's window (see bots/ops/budget.py);
  TTL = the platform's reset_after. The shards of one token (`discord:host#0/4`...) are accounts of their
  own, leased one by one, and share the token's budget key.
- `identify-turn:{account}:{bucket}`: who identifies next in a bucket (bots/ops/identifyturns.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import random
import secrets
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from bots.core.ports import Adapter
from bots.ops.budget import RESERVE_FRACTION, ConnectBudget, ConnectGate, Decision, budget_key
from bots.ops.identifyturns import RedisIdentifyTurns, offer
from bots.ops.leasescript import COUNT_LUA, TICK_LUA
from bots.ops.leasestatus import text as _text
from bots.state.redis import FAULTS, PREFIX, make_client, stop_task

log = logging.getLogger("botfleet.leases")

LEASE_SECONDS = 15.0
# Stop receiving this long before a lease that could not be renewed may expire: the time a disconnect
# may take. A fifth of the lease time, at most 3 s (closing a gateway session takes well under that).
MARGIN_SHARE, MARGIN_MAX = 0.2, 3.0
# What a lease tick may fail with when Redis is slow, away or refuses: the lease loop rides these out.
LEASE_FAULTS: tuple[type[BaseException], ...] = (*FAULTS, RedisError)

TAKE, HOLD, RELEASE, SKIP = "0", "1", "2", "3"


def process_identity() -> str:
    """hostname:pid:random, so a restarted process with a recycled pid is still someone new."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class LeaseManager:
    """Holds this process's share of the adapters' accounts and keeps the adapters connected to them."""

    def __init__(
        self,
        redis: str | Redis,
        adapters: Sequence[Adapter],
        *,
        lease_seconds: float = LEASE_SECONDS,
        prefix: str = PREFIX,
        identity: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        connect_backoff: tuple[float, float] = (5.0, 300.0),
        reserve_fraction: float = RESERVE_FRACTION,
    ) -> None:
        if isinstance(redis, str):
            # Its own small pool: lease renewals must not queue behind message traffic.
            self._client = make_client(redis, max_connections=4, socket_timeout=max(1.0, lease_seconds / 5))
            self._owns_client = True
        else:
            self._client = redis
            self._owns_client = False
        self.identity = identity or process_identity()
        self.lease_seconds = lease_seconds
        self.prefix = prefix
        self.clock = clock
        self.connect_backoff = connect_backoff
        self._adapter_of: dict[str, Adapter] = {}
        for adapter in adapters:
            for account in adapter.accounts():
                self._adapter_of[account] = adapter
        # Order of preference: a hash of (identity, account), so processes prefer different accounts.
        self.accounts = sorted(self._adapter_of, key=lambda a: hashlib.sha1(f"{self.identity}\n{a}".encode()).digest())
        pool = hashlib.sha1("\n".join(sorted(self._adapter_of)).encode()).hexdigest()[:12]
        self._members_key = f"{prefix}members:{pool}"
        self._script = self._client.register_script(TICK_LUA)
        self._count_script = self._client.register_script(COUNT_LUA)
        self.gate = ConnectGate(self._count, reserve_fraction=reserve_fraction, clock=clock)
        offer(adapters, RedisIdentifyTurns(self._client, prefix, self.identity))
        # Renewing often keeps the last renewal recent when Redis stalls, so a stall costs less of the
        # lease's remaining time (one small script per tick).
        self.interval = lease_seconds / 10
        # A renewed lease is ours until at least (renewal *sent* + lease time); it is trusted until the
        # margin before that, which is the time disconnecting has to finish before anyone may take over.
        self.margin = min(lease_seconds * MARGIN_SHARE, MARGIN_MAX)
        self.trust = lease_seconds - self.margin
        self.share = len(self.accounts)
        self._held: set[str] = set()  # leases held, to be connected
        self._releasing: set[str] = set()  # leases held, to be disconnected and then handed back
        self._connected: set[str] = set()
        self._backoff: dict[str, tuple[float, float]] = {}  # account -> (until, last delay)
        self._valid_until = 0.0
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failing_since: float | None = None
        self._retry = 0.0
        self.holders: dict[str, tuple[str, float]] = {}

    # --- what tests and status look at ------------------------------------------------------------

    @property
    def held(self) -> frozenset[str]:
        return frozenset(self._held)

    @property
    def connected(self) -> frozenset[str]:
        return frozenset(self._connected)

    def idle(self) -> bool:
        """No connect or disconnect is under way."""
        return all(t.done() for t in self._workers.values())

    # --- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        # No account to receive on (the console only): nothing to share with other processes.
        if self._task is None and self.accounts:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="botfleet-leases")

    async def stop(self, grace: float = 10.0) -> None:
        """Disconnect everything, then hand every lease back so another process can take over at once."""
        if self._task is not None:
            await stop_task(self._task)
            self._task = None
        self._releasing |= self._held
        self._held.clear()
        for account in list(self._releasing | self._connected):
            self._kick(account)
        workers = [t for t in self._workers.values() if not t.done()]
        if workers:
            _, pending = await asyncio.wait(workers, timeout=grace)
            for task in pending:
                await stop_task(task)
        try:
            async with asyncio.timeout(min(grace, 2.0)):
                await self._tick_once(member=False)
        except LEASE_FAULTS as exc:
            log.warning("could not hand leases back (%s); they expire in %.0fs", exc, self.lease_seconds)
        if self._owns_client:
            await self._client.aclose()

    # --- the loop ---------------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                await self._step()
            except Exception:
                # A bug, not Redis: without a working loop no lease is renewed, so stop receiving on
                # everything at once rather than when the leases run out; the next ticks take them again.
                log.exception("lease loop failed: stopping every account, taking them again shortly")
                self._stop_all()
                await asyncio.sleep(self.interval)

    async def _step(self) -> None:
        sent = self.clock()
        try:
            async with asyncio.timeout(self._tick_timeout(sent)):
                wait = await self._tick_once(member=True)
        except LEASE_FAULTS as exc:
            wait = self._renewal_failed(sent, exc)
        else:
            self._renewed(sent)
        self._check_deadline()
        if self._held or self._releasing:
            wait = min(wait, max(0.0, self._valid_until - self.clock()))
        try:
            async with asyncio.timeout(wait):
                await self._wake.wait()
        except TimeoutError:
            pass
        self._wake.clear()
        self._check_deadline()

    def _tick_timeout(self, now: float) -> float:
        if self._failing_since is not None and (self._held or self._releasing):
            # Renewals are late: keep one waiting right up to the deadline, so that it lands the moment
            # a stalled Redis answers again (the client's socket timeout still ends a dead connection).
            return max(0.01, self._valid_until - now)
        return min(self.interval, 2.0)

    def _renewal_failed(self, sent: float, exc: BaseException) -> float:
        """Late is not lost: keep receiving until the deadline; returns how long to wait to retry."""
        if self._failing_since is None:
            self._failing_since = sent
            left = max(0.0, self._valid_until - sent) if self._held or self._releasing else 0.0
            log.warning("cannot renew account leases (%s); still receiving for %.1fs", exc or type(exc).__name__, left)
        self._retry = min(max(self._retry * 2, 0.05), self.interval / 2)
        return self._retry * random.uniform(0.8, 1.2)

    def _renewed(self, sent: float) -> None:
        self._retry = 0.0
        self._valid_until = sent + self.trust
        if self._failing_since is not None:
            log.warning("account leases renewed again after %.1fs", sent - self._failing_since)
            self._failing_since = None

    def _stop_all(self) -> None:
        dropped = self._held | self._releasing | self._connected
        self._held.clear()
        self._releasing.clear()
        for account in dropped:
            self._kick(account)

    def _check_deadline(self) -> None:
        if (self._held or self._releasing) and self.clock() >= self._valid_until:
            dropped = sorted(self._held | self._releasing)
            log.warning(
                "leases not renewed in time: stopping %s so that no two processes receive on them",
                ", ".join(dropped),
            )
            self._held.clear()
            self._releasing.clear()
            for account in dropped:
                self._kick(account)

    def _flag(self, account: str, now: float) -> str:
        if account in self._held:
            return HOLD
        if account in self._releasing:
            busy = account in self._connected or not self._worker_done(account)
            return HOLD if busy else RELEASE
        backoff = self._backoff.get(account)
        if backoff is not None and backoff[0] > now:
            return SKIP
        return TAKE

    def _worker_done(self, account: str) -> bool:
        task = self._workers.get(account)
        return task is None or task.done()

    async def _run_script(self, *, member: bool) -> list[Any]:
        now = self.clock()
        flags = [self._flag(a, now) if member else (RELEASE if a in self._releasing else SKIP) for a in self.accounts]
        lease_prefix = f"{self.prefix}lease:"
        keys = [
            self._members_key,
            f"{self.prefix}accounts",
            f"{self.prefix}epoch",
            *(lease_prefix + a for a in self.accounts),
        ]
        ms = max(1, int(self.lease_seconds * 1000))
        raw: list[Any] = await self._script(
            keys=keys, args=[self.identity, ms, "1" if member else "0", *flags, lease_prefix]
        )
        return raw

    async def _tick_once(self, *, member: bool) -> float:
        """One round trip; returns how long to wait before the next one."""
        raw = await self._run_script(member=member)
        self.share = int(raw[0])
        soonest = int(raw[1])
        grace = int(raw[2])
        if not member:
            return self.interval
        under_share = len(self._held) < self.share
        waits = [self.interval]
        if grace > 0 and under_share:
            # Redis lost its data a moment ago: free accounts may be taken once the grace is over.
            waits.append(grace / 1000 + 0.02)
        for i, account in enumerate(self.accounts):
            holder, pttl = _text(raw[3 + 2 * i]), int(raw[4 + 2 * i])
            if self._follow(account, holder, pttl) and under_share:
                # Wake when that lease lapses rather than at the next regular tick.
                waits.append(pttl / 1000 + 0.02)
        if soonest >= 0:
            # A member about to expire may be dead: recompute the share the moment it goes.
            waits.append(soonest / 1000 + 0.02)
        self._shed_excess()
        return max(min(waits), 0.01)

    def _follow(self, account: str, holder: str, pttl: int) -> bool:
        """Take in who holds the account, connecting or disconnecting to match; True when another
        process holds it on a lease that will lapse (worth waking up for)."""
        self.holders[account] = (holder, max(0, pttl) / 1000)
        mine = holder == self.identity
        if account in self._releasing:
            if not mine:
                self._releasing.discard(account)
            return False
        if mine and account not in self._held:
            self._held.add(account)
            log.info("lease on %s taken by %s", account, self.identity)
            self._kick(account)
            return False
        if not mine and account in self._held:
            self._held.discard(account)
            log.warning("lease on %s lost to %s", account, holder or "nobody")
            self._kick(account)
            return False
        return bool(holder) and not mine and pttl >= 0

    def _shed_excess(self) -> None:
        excess = len(self._held) - self.share
        if excess <= 0:
            return
        # Give back the least preferred, and accounts not yet connected before connected ones.
        order = sorted(self._held, key=lambda a: (a in self._connected, -self.accounts.index(a)))
        for account in order[:excess]:
            self._held.discard(account)
            self._releasing.add(account)
            log.info("handing %s over: this process holds more than its share (%d)", account, self.share)
            self._kick(account)

    # --- connecting -------------------------------------------------------------------------------

    def _kick(self, account: str) -> None:
        if self._worker_done(account):
            self._workers[account] = asyncio.get_running_loop().create_task(self._reconcile(account))

    async def _reconcile(self, account: str) -> None:
        """Bring the adapter's connection to what the lease says, one step at a time."""
        adapter = self._adapter_of[account]
        try:
            while True:
                want = account in self._held
                have = account in self._connected
                if want == have:
                    return
                if want:
                    await self._connect(adapter, account)
                else:
                    try:
                        await adapter.disconnect(account)
                    except Exception:
                        log.exception("disconnecting %s failed", account)
                    self._connected.discard(account)
                    log.info("stopped receiving on %s", account)
        finally:
            self._wake.set()

    async def _connect(self, adapter: Adapter, account: str) -> None:
        wait = await self.gate.check(adapter, account)
        if wait is not None:
            # Over the platform's session budget (the gate said so once): hand the lease back and leave
            # the account alone until the platform's window resets.
            self._give_back(account, wait, self.connect_backoff[0] / 2)
            return
        try:
            ok = await adapter.connect(account)
        except Exception:
            log.exception("connecting %s failed", account)
            ok = False
        if ok:
            self._connected.add(account)
            self._backoff.pop(account, None)
            log.info("receiving on %s", account)
            return
        # Hand the lease back and leave the account alone for a while: another process may do better.
        try:
            await adapter.disconnect(account)
        except Exception:
            log.debug("cleaning up after a failed connect of %s", account, exc_info=True)
        lo, hi = self.connect_backoff
        delay = min(hi, (self._backoff.get(account, (0.0, lo / 2))[1]) * 2)
        self._give_back(account, delay, delay)
        log.warning("%s refused the connection; retrying it in %.0fs", account, delay)

    async def _count(self, account: str, budget: ConnectBudget, reserve: int) -> Decision | None:
        """Count a connect of the account fleet-wide, unless it would eat into the reserve."""
        try:
            async with asyncio.timeout(min(self.interval, 2.0)):
                raw: list[Any] = await self._count_script(
                    keys=[f"{self.prefix}identify:{budget_key(account)}"],
                    args=[budget.total, budget.remaining, reserve, max(1, int(budget.reset_after * 1000))],
                )
        except LEASE_FAULTS as exc:
            # The lease was just renewed, so this is a blip: the platform's figures alone decide.
            log.debug("%s: connect count unavailable (%s)", account, exc)
            return None
        allow, used, first, pttl = (int(x) for x in raw)
        return Decision(bool(allow), used, budget.total, reserve, max(0, pttl) / 1000, bool(first))

    def _give_back(self, account: str, wait: float, delay: float) -> None:
        """Release the account's lease and take it again no sooner than `wait` seconds from now;
        `delay` is what the next failed connect doubles."""
        self._backoff[account] = (self.clock() + wait, delay)
        if account in self._held:
            self._held.discard(account)
            self._releasing.add(account)
