"""Adding a platform is one package and one registry entry: its settings, feeds and persona accounts are
read from config.yaml and persona files without editing the settings models, and the fleet answers
through it like any other."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from adapters.registry import PLATFORMS, Platform, config_secrets, persona_secrets
from bots.app import build_fleet, make_adapters
from bots.config import FleetConfig
from bots.core.events import Author, Message, Notice, React, Reply, Sent
from bots.core.ports import FleetView
from bots.llm.canned import CannedClient
from bots.loading import load_all
from bots.persona import Persona
from bots.state.memory import MemoryRateLimiter, MemoryStore
from bots.yamlfile import ConfigError


class PigeonSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    token: str = ""
    loft: str = "roof"


class PigeonAdapter:
    """A platform that exists only in this test: it records what the fleet sends."""

    platform = "pigeon"
    text_limit = 500

    def __init__(self, settings: PigeonSettings) -> None:
        self.settings = settings
        self.sent: list[tuple[str, str]] = []
        self.fleet: FleetView | None = None

    async def start(self, fleet: FleetView) -> None:
        self.fleet = fleet

    def accounts(self) -> list[str]:
        return ["pigeon:host"]

    async def connect(self, account: str) -> bool:
        return True

    async def disconnect(self, account: str) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def deliver(self, reply: Reply, persona: Persona, snapshots: AsyncIterator[str]) -> Sent:
        text = ""
        async for shown in snapshots:
            text = shown
        self.sent.append((persona.id, text))
        return Sent(message_ids=(f"p{len(self.sent)}",), text=text)

    async def react(self, react: React, persona: Persona) -> None:
        return None

    async def notify(self, notice: Notice) -> None:
        self.sent.append(("fleet", notice.text))


def _pigeon(cfg: FleetConfig, personas: Sequence[Persona]) -> PigeonAdapter:
    return PigeonAdapter(PLATFORMS["pigeon"].settings(cfg))


@pytest.fixture
def pigeon(monkeypatch: pytest.MonkeyPatch) -> Platform:
    entry = Platform("pigeon", PigeonSettings, _pigeon)
    monkeypatch.setitem(PLATFORMS, "pigeon", entry)
    return entry


def write(tmp: Path, adapters: str, platforms: str = "") -> Path:
    (tmp / "personas").mkdir()
    (tmp / "personas" / "owl.yaml").write_text(
        "id: owl\nname: The Owl\nprompt: You are wise.\ntriggers:\n  - mention: true\n  - command: true\n" + platforms
    )
    cfg = tmp / "config.yaml"
    cfg.write_text(
        "llm:\n  provider: openai\n  base_url: http://127.0.0.1:9/v1\n"
        "fleet:\n  reply_delay_seconds: [0, 0]\n"
        f"adapters:\n{adapters}"
        "feeds:\n  pigeon:\n    - channel: square\n      comments: 1\n"
    )
    return cfg


async def test_a_registered_platform_needs_no_other_edit(tmp_path: Path, pigeon: Platform) -> None:
    path = write(
        tmp_path,
        "  pigeon:\n    token: coo-secret-1\n    loft: tower\n",
        "platforms:\n  pigeon:\n    token: owl-secret-2\n",
    )
    cfg, personas = load_all(path)
    settings = pigeon.settings(cfg)
    assert isinstance(settings, PigeonSettings) and settings.loft == "tower"
    assert cfg.feeds.find("pigeon", ("square",)) is not None
    assert "coo-secret-1" in config_secrets(cfg) and "owl-secret-2" in persona_secrets(personas)

    adapters = make_adapters(cfg, personas)
    assert [a.platform for a in adapters] == ["pigeon"]
    fleet = build_fleet(cfg, personas, llm=CannedClient("hoo"), state=(MemoryStore(), MemoryRateLimiter()))
    fleet.attach(adapters[0])
    await fleet.start()
    await fleet.dispatch(
        Message(
            platform="pigeon",
            id="1",
            channel="c1",
            author=Author("u1", "Ann"),
            text="@owl what now?",
            mentions=frozenset({"owl"}),
        )
    )
    await fleet.drain()
    await fleet.stop(0)
    pigeon_adapter = adapters[0]
    assert isinstance(pigeon_adapter, PigeonAdapter)
    assert [who for who, _ in pigeon_adapter.sent] == ["owl"]
    assert pigeon_adapter.sent[0][1].startswith("hoo")


def test_a_section_for_an_unknown_platform_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "  discrod:\n    token: x\n")
    with pytest.raises(ConfigError) as err:
        load_all(path)
    shown = [str(p) for p in err.value.problems]
    assert any("config.yaml:7: adapters.discrod: no such platform" in s for s in shown), shown
    # The feed section names a platform nobody registered either.
    assert any("feeds.pigeon: no such platform" in s for s in shown), shown


def test_a_bad_setting_of_a_registered_platform_is_a_problem_with_its_line(tmp_path: Path, pigeon: Platform) -> None:
    path = write(tmp_path, "  pigeon:\n    lofty: yes\n")
    with pytest.raises(ConfigError) as err:
        load_all(path)
    assert any("adapters.pigeon.lofty" in str(p) for p in err.value.problems), err.value.problems
