"""What a redis client sends, command by command, as the server would see each request arrive."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis


class Sent:
    """Records the name of every command `client` sends from now on: a script call is one EVALSHA,
    however many commands it runs inside Redis. (Pipelines take another path and are not recorded.)"""

    def __init__(self, client: Redis) -> None:
        self.names: list[str] = []
        inner = client.execute_command

        async def record(*args: Any, **options: Any) -> Any:
            self.names.append(str(args[0]).upper())
            return await inner(*args, **options)

        client.execute_command = record  # type: ignore[method-assign]

    def count(self, name: str) -> int:
        return self.names.count(name)
