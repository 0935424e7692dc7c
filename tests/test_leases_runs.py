"""`botfleet run`, twice, on one Redis against the fake Telegram: the processes split the bot accounts,
`botfleet status` shows who holds what, a message two processes receive is answered once, and a
SIGKILLed process's accounts are taken over within the lease time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import redis.asyncio

from bots.ops.leasestatus import read_leases
from bots.state.redis import make_client
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.telegram import FakeTelegram
from tests.redis_server import RedisServer
from tests.telegram_runs import TG_ACCOUNTS, Lounge, Runs, open_lounge, run_env, write_fleet

RUN_LEASE = 2.0
Process = asyncio.subprocess.Process
Held = dict[str, int]


class Leases:
    """Who holds which account's lease, read from Redis as `botfleet status` does."""

    def __init__(self, client: redis.asyncio.Redis, runs: Runs) -> None:
        self.client = client
        self.runs = runs

    async def holders(self) -> Held:
        """account -> pid of the process holding its lease."""
        leases, _ = await read_leases(self.client)
        return {x.account: int(x.holder.split(":")[1]) for x in leases if x.holder}

    async def until(self, cond: Callable[[Held], bool], within: float, what: str) -> Held:
        deadline = time.monotonic() + within
        while True:
            held = await self.holders()
            if cond(held):
                return held
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {within}s: {what}; leases {held}\n{self.runs.tails()}")
            await asyncio.sleep(0.05)


def held_by(*pids: int) -> Callable[[Held], bool]:
    return lambda h: set(h) == TG_ACCOUNTS and set(h.values()) == set(pids)


async def split_host_from_skeptic(runs: Runs, leases: Leases) -> tuple[Process, Process, Held]:
    """Two runs that split the accounts with the host bot and the skeptic in different processes, or
    cross-process dedupe goes untested. Which account moves is up to the process that held them all (by
    its random identity): stop that one and start another until the split is right."""
    a = await runs.start()
    await leases.until(held_by(a.pid), 30, "a holds all")
    b = await runs.start()
    split = await leases.until(held_by(a.pid, b.pid), 30, "a split")
    for _ in range(10):
        if split["telegram:host"] != split["telegram:skeptic"]:
            break
        a.terminate()
        await a.wait()
        await leases.until(held_by(b.pid), 30, "b holds all")
        a, b = b, await runs.start()
        split = await leases.until(held_by(a.pid, b.pid), 30, "a new split")
    assert split["telegram:host"] != split["telegram:skeptic"], split
    return a, b, split


async def check_status_table(runs: Runs, split: Held) -> None:
    status = await runs.botfleet("status", stdout=asyncio.subprocess.PIPE)
    out, _ = await status.communicate()
    assert status.returncode == 0
    table = out.decode()
    assert "processes: 2" in table
    for account, holder_pid in split.items():
        assert any(account in line and f":{holder_pid}:" in line for line in table.splitlines()), table


async def check_answered(lounge: Lounge, times: int) -> None:
    """The skeptic has answered `times` messages, and no second answer turns up a while later."""
    await lounge.fake.wait_for(lambda: len(lounge.skeptic_replies()) >= times, timeout=15)
    await asyncio.sleep(1.0)
    replies = lounge.skeptic_replies()
    assert len(replies) == times, replies


async def test_two_botfleet_runs_split_accounts_take_over_and_answer_once(
    tmp_path: Path, redis_servers: Callable[[], RedisServer]
) -> None:
    """Two real `botfleet run` processes on one Redis and the fake Bot API: they split the three bot
    accounts, a mention that two bots receive (in different processes) is answered once, and when
    one process is SIGKILLed the other receives on every account within the lease time."""
    server = redis_servers()
    async with FakeTelegram() as fake, FakeOpenAI(reply=lambda body: "I doubt that.") as ai:
        lounge = open_lounge(fake)
        write_fleet(tmp_path, server.url, fake.base_url, lease=RUN_LEASE, llm_timeout=5)
        runs = Runs(tmp_path, run_env(ai.base_url))
        leases = Leases(make_client(server.url), runs)
        try:
            a, b, split = await split_host_from_skeptic(runs, leases)
            await check_status_table(runs, split)

            said = await lounge.says("@skeptic_bot is this legit?")
            # Both bots received it, in different processes: still one answer.
            await check_answered(lounge, 1)
            assert lounge.skeptic_replies()[0].reply_to_message_id == said["message_id"]

            victim, survivor = (a, b) if split["telegram:skeptic"] == a.pid else (b, a)
            killed_at = time.monotonic()
            victim.kill()
            await victim.wait()
            await leases.until(held_by(survivor.pid), 10, "takeover")
            assert time.monotonic() - killed_at < RUN_LEASE + 1.5

            await lounge.says("@skeptic_bot and now?")
            await check_answered(lounge, 2)
        finally:
            await runs.close()
            await leases.client.aclose()
