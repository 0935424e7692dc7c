"""Shared state in Redis: client and pub/sub, the limiter, the store, health, and the local fallback."""

from bots.state.redis.backend import (
    CALL_TIMEOUT,
    FAULTS,
    PREFIX,
    FallbackRateLimiter,
    FallbackStore,
    RedisHealth,
    RedisRateLimiter,
    RedisStore,
    make_client,
    open_redis_state,
    stop_task,
    subscribe,
)

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
