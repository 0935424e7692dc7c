"""Operating the fleet, in process: secret masking in logs, the store settings, retention, cutting replies
cleanly at shutdown, and reload reporting the settings that need a restart."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bots.config import FleetConfig, load_config
from bots.core.ports import Chunk, LLMRequest, Turn
from bots.ops.logs import JsonFormatter, RedactingFormatter, secrets_of
from bots.ops.reload import apply
from bots.state.memory import MemoryStore
from bots.yamlfile import ConfigError
from tests.conftest import make_fleet, msg, persona
from tests.ops_world import DISCLOSURE

# --- logs -----------------------------------------------------------------------------------------


def test_no_log_line_contains_a_configured_secret(tmp_path: Path) -> None:
    cfg_file = tmp_path / "config.yaml"
    cfg_file.write_text(
        "adapters:\n  discord:\n    token: ${DT}\n  telegram: {token: '12345:tg-secret-token'}\n"
        "llm: {api_key: sk-config-key-0001}\nstore: 'redis://:redis-pass-77@localhost:6379/0'\n"
    )
    env = {"DT": "discord-tok-abcdef", "OPENAI_API_KEY": "sk-env-key-999999", "HOME": "/home/someone"}
    cfg = load_config(cfg_file, env=env)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(RedactingFormatter(JsonFormatter(), secrets_of(cfg, env)))
    logger = logging.getLogger("botfleet.test_secrets")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        logger.warning("GET https://api.telegram.org/bot12345:tg-secret-token/getMe failed")
        logger.info("auth %s and %s", "sk-config-key-0001", "sk-env-key-999999", extra={"fields": {"persona": "a"}})
        try:
            raise RuntimeError("connect redis://:redis-pass-77@localhost discord-tok-abcdef")
        except RuntimeError:
            logger.exception("boom")
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    for secret in ("tg-secret-token", "sk-config-key-0001", "sk-env-key-999999", "redis-pass-77", "discord-tok-abcdef"):
        assert secret not in out
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert len(lines) == 3 and lines[1]["persona"] == "a" and "***" in lines[1]["msg"]


# --- config ---------------------------------------------------------------------------------------


def test_store_accepts_a_url_or_a_mapping_with_retention(tmp_path: Path) -> None:
    f = tmp_path / "config.yaml"
    f.write_text("store: redis://h:1/0\n")
    cfg = load_config(f, env={})
    assert cfg.store == "redis://h:1/0" and cfg.retention_days == 30
    f.write_text("store:\n  url: redis://h:2/0\n  retention_days: 7\nllm: {price_per_1k: 0.25}\n")
    cfg = load_config(f, env={})
    assert cfg.store == "redis://h:2/0" and cfg.retention_days == 7
    assert cfg.llm.price_per_1k is not None and cfg.llm.price_per_1k.completion == 0.25
    assert cfg.pid_file == tmp_path / "botfleet.pid"
    f.write_text("store:\n  url: redis://h:2/0\n  retention_days: -1\n")
    with pytest.raises(ConfigError) as err:
        load_config(f, env={})
    assert f"{f}:3: retention_days:" in str(err.value)
    f.write_text("store:\n  uri: redis://h:2/0\n")
    with pytest.raises(ConfigError) as err:
        load_config(f, env={})
    assert f"{f}:1: store: store: unknown key(s) uri" in str(err.value)
    assert FleetConfig.model_validate({"store": {"retention_days": 3}}).retention_days == 3


# --- retention ------------------------------------------------------------------------------------


async def test_history_older_than_retention_is_deleted() -> None:
    store = MemoryStore(retention_seconds=100)
    await store.append("t:c", Turn("a", "old", at=1000))
    await store.append("t:idle", Turn("a", "old too", at=1000))
    await store.append("t:c", Turn("a", "new", at=1150))
    assert [t.text for t in await store.history("t:c", 10)] == ["new"]
    assert await store.prune(1200) == 1  # the idle conversation goes too
    assert await store.history("t:idle", 10) == []


# --- shutdown -------------------------------------------------------------------------------------


class Slow:
    """Streams a few words, then stalls (a slow model) unless told to finish."""

    name = "slow"

    def __init__(self) -> None:
        self.started = asyncio.Event()

    async def stream(self, request: LLMRequest) -> AsyncIterator[Chunk]:
        yield Chunk(text="half a ")
        self.started.set()
        await asyncio.sleep(30)
        yield Chunk(text="thought", finish_reason="stop")

    async def close(self) -> None:
        return None


async def test_stop_cuts_streaming_replies_cleanly_and_in_time() -> None:
    llm = Slow()
    fleet, adapter, _ = make_fleet([persona("a", triggers=[{"keywords": ["x"]}])], llm=llm)
    outcomes: list[str] = []
    fleet.outcomes.append(lambda outcome, action: outcomes.append(outcome))
    await fleet.dispatch(msg("x"))
    await asyncio.wait_for(llm.started.wait(), 2)
    loop = asyncio.get_running_loop()
    began = loop.time()
    await fleet.stop(grace=0.2)
    assert loop.time() - began < 1.5
    # The adapter was told the reply was cut, as if the model had stopped: it can mark what it showed.
    assert adapter.cut_off == ["half a"] and adapter.replies == []
    assert outcomes == ["cut_off"] and fleet.replying == 0
    assert (await fleet.dispatch(msg("x"))) is None and not fleet._tasks  # no new work after stop


async def test_stop_lets_replies_finish_within_grace() -> None:
    fleet, adapter, _ = make_fleet([persona("a", triggers=[{"keywords": ["x"]}])], reply_delay_seconds=[0.1, 0.1])
    await fleet.dispatch(msg("x"))
    await fleet.stop(grace=5)
    assert [t for _, t in adapter.replies] == [f"ok\n\n{DISCLOSURE}"]


# --- reload and settings that need a restart ----------------------------------------------------


async def test_reload_reports_settings_it_cannot_apply() -> None:
    fleet, _, _ = make_fleet([persona("skeptic")])
    cfg = fleet.config
    changed = cfg.model_copy(
        update={"retention_days": 7, "fleet": cfg.fleet.model_copy(update={"history_size": 9, "lease_seconds": 30})}
    )
    restart = apply(fleet, changed, [persona("skeptic")])
    assert {"retention_days", "fleet.history_size", "fleet.lease_seconds"} <= set(restart)
