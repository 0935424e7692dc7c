"""Shared state in Redis: client and pub/sub, the limiter, the store, health, and the local fallback.

- client.py: the client for the per-message path, pub/sub, the key prefix, the time budget, FAULTS.
- limiter.py: GCRA rate limits in one Lua script per batch of routing decisions.
- store.py: the Store protocol in Redis (history, dedupe, opt-outs, mutes, first contacts, usage).
- health.py: whether Redis is usable right now, shared by the store and the limiter.
- fallback.py: local state that answers while Redis is away, and `open_redis_state`.
"""

from bots.state.redis.client import CALL_TIMEOUT, FAULTS, PREFIX, make_client, stop_task, subscribe
from bots.state.redis.fallback import FallbackRateLimiter, FallbackStore, open_redis_state
from bots.state.redis.health import RedisHealth
from bots.state.redis.limiter import RedisRateLimiter
from bots.state.redis.store import RedisStore

__all__ = [
    "CALL_TIMEOUT",
    "FAULTS",
    "PREFIX",
    "FallbackRateLimiter",
    "FallbackStore",
    "RedisHealth",
    "RedisRateLimiter",
    "RedisStore",
    "make_client",
    "open_redis_state",
    "stop_task",
    "subscribe",
]
