"""Building the process from configuration: the platform registry, the adapters it makes, the LLM client,
and the import boundaries that keep `botfleet check` light and bots/core free of adapters."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from adapters.registry import PLATFORMS, check_problems, names
from bots.app import NO_KEY_HELP, SetupError, make_adapters, make_llm
from bots.cli import parser
from bots.config import FleetConfig
from bots.llm.openai import OpenAIClient
from bots.ops import logs
from bots.ops.reload import RESTART_ONLY, apply
from tests.conftest import make_fleet, persona

ROOT = Path(__file__).resolve().parent.parent


def cfg(**data: Any) -> FleetConfig:
    return FleetConfig.model_validate(data)


def test_every_registered_platform_has_its_settings_section() -> None:
    assert names() == ["console", "discord", "telegram", "web"]
    for name, platform in PLATFORMS.items():
        assert platform.name == name
        assert isinstance(platform.settings(FleetConfig()), platform.settings_model)


def test_adapters_come_from_the_tokens_the_registry_finds() -> None:
    quiet = [persona("a")]
    assert [a.platform for a in make_adapters(cfg(), quiet)] == ["console"]
    assert [a.platform for a in make_adapters(cfg(), quiet, ["console"])] == ["console"]
    # Asked for a platform without a token: nothing, rather than a console nobody asked for.
    assert make_adapters(cfg(), quiet, ["telegram"]) == []
    with_account = [persona("a", platforms={"telegram": {"token": "123:persona-token"}})]
    assert [a.platform for a in make_adapters(cfg(), with_account)] == ["telegram"]
    fleet_token = cfg(adapters={"telegram": {"token": "123:fleet-token"}})
    assert [a.platform for a in make_adapters(fleet_token, quiet, ["telegram", "console"])] == ["telegram", "console"]
    with pytest.raises(SetupError, match="unknown adapter"):
        make_adapters(cfg(), quiet, ["slack"])


def test_run_adapter_choices_are_the_registry() -> None:
    assert parser().parse_args(["run", "--adapter", "telegram"]).adapter == ["telegram"]
    with pytest.raises(SystemExit):
        parser().parse_args(["run", "--adapter", "slack"])


def test_secrets_of_every_platform_are_masked() -> None:
    config = cfg(adapters={"discord": {"token": "discord-fleet-token"}, "telegram": {"token": "tg-fleet-token"}})
    masked = logs.secrets_of(config, env={})
    assert {"discord-fleet-token", "tg-fleet-token"} <= set(masked)
    people = [
        persona("a", platforms={"discord": {"token": "discord-persona-token"}}),
        persona("b", platforms={"telegram": {"token": "tg-persona-token"}}),
    ]
    assert sorted(logs.persona_secrets(people)) == ["discord-persona-token", "tg-persona-token"]


def test_platform_checks_run_only_while_the_platform_is_in_use() -> None:
    party = persona("a", reactions=[{"keywords": ["party"], "emoji": "🦜"}])
    assert check_problems(cfg(), [party]) == []
    problems = check_problems(cfg(adapters={"telegram": {"token": "123:abc"}}), [party])
    assert [p.field for p in problems] == ["reactions[1].emoji"]


def test_adapter_settings_and_persona_accounts_need_a_restart() -> None:
    assert {"adapters.console", "adapters.discord", "adapters.telegram"} <= set(RESTART_ONLY)
    fleet, _, _ = make_fleet([persona("a")])
    changed = fleet.config.model_copy(
        update={"adapters": fleet.config.adapters.model_copy(update={"telegram": {"token": "123:new"}})}
    )
    restart = apply(fleet, changed, [persona("a", platforms={"discord": {"token": "discord-new"}})])
    assert "adapters.telegram" in restart
    assert "platform accounts of a" in restart


# --- 12.14: provider openai without a key ---------------------------------------------------------


def test_openai_provider_without_a_key_names_the_key_not_the_local_model() -> None:
    with pytest.raises(SetupError) as raised:
        make_llm(cfg(llm={"provider": "openai"}), {})
    said = str(raised.value)
    assert said == NO_KEY_HELP
    assert "OPENAI_API_KEY" in said and "llm.api_key" in said
    assert ".[local]" not in said and "local model" not in said


def test_openai_provider_with_a_key_or_a_base_url_starts() -> None:
    assert isinstance(make_llm(cfg(llm={"provider": "openai"}), {"OPENAI_API_KEY": "sk-test"}), OpenAIClient)
    assert isinstance(make_llm(cfg(llm={"provider": "openai", "api_key": "sk-test"}), {}), OpenAIClient)
    local_server = {"OPENAI_BASE_URL": "http://127.0.0.1:1/v1"}
    assert isinstance(make_llm(cfg(llm={"provider": "openai"}), local_server), OpenAIClient)


def test_shipped_config_with_provider_openai_and_no_key_says_which_key() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "REDIS_"))}
    env["BOTFLEET_LLM_PROVIDER"] = "openai"
    done = subprocess.run(
        [sys.executable, "-m", "bots", "run", "--config", str(ROOT / "config.yaml"), "--adapter", "console"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "OPENAI_API_KEY" in done.stderr and "llm.api_key" in done.stderr
    assert ".[local]" not in done.stderr


def test_run_with_only_an_adapter_that_has_no_token_exits_saying_which_token() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "REDIS_", "TELEGRAM_", "DISCORD_"))}
    # An endpoint that is never called: the run must stop before any platform or LLM is contacted.
    env["OPENAI_BASE_URL"] = "http://127.0.0.1:1/v1"
    done = subprocess.run(
        [sys.executable, "-m", "bots", "run", "--config", str(ROOT / "config.yaml"), "--adapter", "telegram"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "nothing to run" in done.stderr and "adapters.telegram.token" in done.stderr


# --- import boundaries -----------------------------------------------------------------------------


def test_the_cli_and_the_registry_import_no_platform_sdk_and_no_redis() -> None:
    probe = (
        "import sys, bots.cli, adapters.registry\n"
        "heavy = [m for m in ('discord', 'telegram', 'redis', 'llama_cpp', 'xllamacpp') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def imported_modules(path: Path) -> list[str]:
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append(node.module)
    return found


def test_core_imports_no_adapter_sdk_or_redis() -> None:
    for path in sorted((ROOT / "bots" / "core").rglob("*.py")):
        for module in imported_modules(path):
            top = module.split(".")[0]
            assert top not in ("adapters", "discord", "telegram", "redis", "openai"), f"{path.name} imports {module}"


def test_cli_app_and_loading_import_at_module_level_only() -> None:
    """No function-level imports in the process modules: the only lazy ones are the heavy dependencies."""
    allowed_lazy = {"bots.ops.leases", "bots.state.redis"}
    for name in ("cli.py", "app.py", "loading.py", "simulate.py"):
        tree = ast.parse((ROOT / "bots" / name).read_text(encoding="utf-8"))
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    module = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                    assert module in allowed_lazy, f"bots/{name}: {fn.name} imports {module}"
