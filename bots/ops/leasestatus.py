"""`botfleet status`: every platform account with the process holding its lease, and every live process,
read straight from the Redis the fleet shares (see bots/ops/leases.py for how leases work)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from bots.state.redis import PREFIX, make_client


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    account: str
    holder: str  # "" when nobody holds it
    expires_in: float  # seconds; 0 when free


@dataclass(frozen=True, slots=True)
class MemberInfo:
    identity: str
    pool: str
    expires_in: float


def text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def read_leases(client: Redis, prefix: str = PREFIX) -> tuple[list[LeaseInfo], list[MemberInfo]]:
    """Every known account with its holder, and every live process, straight from Redis."""
    lease_prefix = f"{prefix}lease:"
    now_s, now_us = await client.time()
    now_ms = int(now_s) * 1000 + int(now_us) // 1000
    known = {text(a) for a in await client.zrangebyscore(f"{prefix}accounts", now_ms, "+inf")}
    async for key in client.scan_iter(match=f"{lease_prefix}*", count=500):
        known.add(text(key)[len(lease_prefix) :])
    leases: list[LeaseInfo] = []
    for account in sorted(known):
        async with client.pipeline(transaction=False) as pipe:
            pipe.get(lease_prefix + account)
            pipe.pttl(lease_prefix + account)
            holder, pttl = await pipe.execute()
        if holder is None:
            leases.append(LeaseInfo(account, "", 0.0))
        else:
            leases.append(LeaseInfo(account, text(holder), max(0, int(pttl)) / 1000))
    members: list[MemberInfo] = []
    async for key in client.scan_iter(match=f"{prefix}members:*", count=100):
        name = text(key)
        pool = name.rsplit(":", 1)[-1]
        rows: list[Any] = await client.zrangebyscore(name, now_ms, "+inf", withscores=True)
        for identity, score in rows:
            members.append(MemberInfo(text(identity), pool, (float(score) - now_ms) / 1000))
    members.sort(key=lambda m: m.identity)
    return leases, members


def format_status(leases: Sequence[LeaseInfo], members: Sequence[MemberInfo]) -> str:
    width = max([len(lease.account) for lease in leases] + [len("account")])
    lines = [f"{'account':<{width}}  {'holder':<40}  lease left"]
    for lease in leases:
        if lease.holder:
            lines.append(f"{lease.account:<{width}}  {lease.holder:<40}  {lease.expires_in:.1f}s")
        else:
            lines.append(f"{lease.account:<{width}}  {'(nobody)':<40}  -")
    if not leases:
        # A console-only process has no account to lease and is not listed: say so, or it looks lost.
        lines.append("(no accounts known: no `botfleet run` with a platform token has used this Redis lately;")
        lines.append(" console-only processes hold no account and are not listed)")
    lines.append("")
    lines.append(f"processes: {len(members)}")
    for m in members:
        held = sum(1 for lease in leases if lease.holder == m.identity)
        lines.append(f"  {m.identity:<40}  holds {held}, membership left {m.expires_in:.1f}s")
    return "\n".join(lines)


async def status(url: str, prefix: str = PREFIX) -> str:
    """What `botfleet status` prints."""
    client = make_client(url, max_connections=2, socket_timeout=5.0, connect_timeout=5.0, pool_timeout=5.0)
    try:
        leases, members = await read_leases(client, prefix)
    finally:
        await client.aclose()
    return format_status(leases, members)
