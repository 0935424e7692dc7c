"""/forget end to end (issue 11.16): the person's words leave the prompts, also where a persona quoted
them. `botfleet run` on the console room, the real openai SDK against the fake endpoint, and the store
in memory or on a real redis-server."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.openai_server import FakeOpenAI
from tests.redis_server import RedisServer
from tests.test_console_e2e import start_console, write_fleet

SECRET = "PIN-4242"


def quoting(body: dict[str, Any]) -> str:
    """The persona repeats what it was told, as models do."""
    last = body["messages"][-1]["content"]
    return f"Noted: {last[-40:]}"


def prompt_text(body: dict[str, Any]) -> str:
    return "\n".join(str(m["content"]) for m in body["messages"])


@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_forget_removes_the_persona_reply_quoting_the_person(
    tmp_path: Path, store: str, redis_servers: Callable[[], RedisServer]
) -> None:
    cfg = write_fleet(tmp_path, stream=False)
    if store == "redis":
        cfg.write_text(cfg.read_text() + f"store: {redis_servers().url}\n")
    async with FakeOpenAI(reply=quoting) as fake:
        console = await start_console(cfg, fake)
        await console.say(f"@skeptic my {SECRET} opens the door")
        assert SECRET in await console.expect("[The Skeptic]")
        await console.say("@nerd did you see that?")
        await console.expect("[The Nerd]")
        # Before /forget the quote is in what the model reads: the check below can fail.
        assert SECRET in prompt_text(fake.requests[-1])

        await console.say("/forget")
        await console.expect("[botfleet] Deleted")
        await console.say("@nerd what was it again?")
        await console.expect("[The Nerd]")
        assert SECRET not in prompt_text(fake.requests[-1])

        assert console.proc.stdin is not None
        console.proc.stdin.close()
        async with asyncio.timeout(15):
            rc = await console.proc.wait()
        assert rc == 0, (await console.proc.stderr.read()).decode()  # type: ignore[union-attr]
