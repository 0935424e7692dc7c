"""Real `botfleet run` processes on one Redis against the fake Telegram Bot API: the bot accounts, the
persona files and config they share, the lounge group where alice mentions the skeptic, and the runs
themselves with their logs for failure messages."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.fakes.telegram import FakeTelegram, SentMessage

ROOT = Path(__file__).resolve().parent.parent

TG_TOKENS = {
    "host": "5000:host-secret-AAAAAAAAAAAAAAAA",
    "skeptic": "5001:skeptic-secret-BBBBBBBBBBBBBBBB",
    "optimist": "5002:optimist-secret-CCCCCCCCCCCCCCCC",
}
TG_PERSONAS = {
    "skeptic": """id: skeptic
name: The Skeptic
prompt: You doubt things.
triggers: [{mention: true}, {reply: true}, {command: true}]
platforms: {telegram: {token: "${SKEPTIC_TELEGRAM_TOKEN}"}}
""",
    "optimist": """id: optimist
name: The Optimist
prompt: You look on the bright side.
triggers: [{mention: true}, {reply: true}, {command: true}]
platforms: {telegram: {token: "${OPTIMIST_TELEGRAM_TOKEN}"}}
""",
}
TG_ACCOUNTS = {"telegram:host", "telegram:skeptic", "telegram:optimist"}


@dataclass(frozen=True)
class Lounge:
    """The group on the fake Telegram where alice talks to the bots."""

    fake: FakeTelegram
    group: dict[str, Any]
    alice: dict[str, Any]

    async def says(self, text: str) -> dict[str, Any]:
        return await self.fake.user_says(self.group, self.alice, text)

    def skeptic_replies(self) -> list[SentMessage]:
        return [s for s in self.fake.sent(self.group["id"]) if s.bot_username == "skeptic_bot"]


def open_lounge(fake: FakeTelegram) -> Lounge:
    host = fake.add_bot(TG_TOKENS["host"], "fleet_host_bot", "Fleet")
    skeptic = fake.add_bot(TG_TOKENS["skeptic"], "skeptic_bot", "Skeptic", can_read_all_group_messages=True)
    optimist = fake.add_bot(TG_TOKENS["optimist"], "optimist_bot", "Optimist")
    alice = fake.add_user("Alice", "alice")
    # The host bot is an admin and the skeptic reads everything: a mention reaches both bots.
    group = fake.add_group("Lounge", admins=[host["id"]], members=[skeptic["id"], optimist["id"], alice["id"]])
    return Lounge(fake, group, alice)


def write_fleet(tmp_path: Path, store: str, telegram_url: str, *, lease: float, llm_timeout: float) -> None:
    (tmp_path / "personas").mkdir()
    for pid, text in TG_PERSONAS.items():
        (tmp_path / "personas" / f"{pid}.yaml").write_text(text)
    (tmp_path / "config.yaml").write_text(
        f"store: {store}\n"
        f"llm: {{provider: openai, model: fake-gpt, timeout_seconds: {llm_timeout}, max_retries: 0}}\n"
        f"fleet: {{reply_delay_seconds: [0, 0], lease_seconds: {lease}}}\n"
        f"adapters: {{telegram: {{token: '{TG_TOKENS['host']}', base_url: '{telegram_url}'}}}}\n"
        "pid_file: null\n"
    )


def run_env(openai_url: str) -> dict[str, str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OPENAI_BASE_URL": openai_url,
        "OPENAI_API_KEY": "test-key",
        "SKEPTIC_TELEGRAM_TOKEN": TG_TOKENS["skeptic"],
        "OPTIMIST_TELEGRAM_TOKEN": TG_TOKENS["optimist"],
    }
    env.pop("REDIS_URL", None)
    return env


class Runs:
    """`botfleet run` subprocesses sharing one config, with their logs for failure messages."""

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        self.tmp_path = tmp_path
        self.env = env
        self.procs: list[asyncio.subprocess.Process] = []
        self.logs: list[Path] = []

    async def start(self, adapter: str = "telegram") -> asyncio.subprocess.Process:
        log_file = self.tmp_path / f"run-{len(self.procs)}.log"
        self.logs.append(log_file)
        with log_file.open("wb") as out:
            proc = await self.botfleet("run", "--adapter", adapter, stdout=out, stderr=out)
        self.procs.append(proc)
        return proc

    async def botfleet(self, command: str, *args: str, **streams: Any) -> asyncio.subprocess.Process:
        """`botfleet COMMAND --config ... ARGS` in the runs' directory and environment."""
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bots", command, "--config", str(self.tmp_path / "config.yaml"), *args,
            cwd=self.tmp_path, env=self.env, **streams,
        )  # fmt: skip

    def tails(self) -> str:
        return "\n".join(f"--- {f.name}\n{f.read_text(errors='replace')[-3000:]}" for f in self.logs)

    async def close(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.terminate()
        for proc in self.procs:
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
