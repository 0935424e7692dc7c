"""Relationship memory in `botfleet simulate` and `botfleet check`."""

from __future__ import annotations

from pathlib import Path

import pytest

from bots.cli import main
from bots.config import FleetConfig
from bots.core.commands import about_text
from tests.conftest import make_fleet, persona
from tests.test_simulate import fleet_dir, run

__all__ = ["fleet_dir"]

DAY = 86400


def test_simulate_shows_memory_updates_on_virtual_time(fleet_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [
        {"at": 0, "channel": "c", "author": "u", "text": "@a I might quit my job to open a bakery"},
        {"at": 40, "channel": "c", "author": "u", "text": "@a what do you think?"},
        # Three days later, elsewhere: the talk on day 1 went quiet long ago, so it was remembered.
        {"at": 3 * DAY, "channel": "d", "author": "u", "text": "@a hello again"},
    ]
    out = run(fleet_dir, rows, capsys)
    remembered = [r for r in out if r["action"] == "remember"]
    assert len(remembered) == 1
    row = remembered[0]
    assert row["i"] == 2 and row["persona"] == "a" and row["reason"] == "written" and row["person"] == "sim:u"
    assert any("bakery" in note for note in row["notes"])
    # The replies around it are unchanged.
    assert [r["action"] for r in out] == ["reply", "reply", "remember", "reply"]


def test_simulate_with_memory_off_has_no_memory_rows(fleet_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (fleet_dir / "config.yaml").write_text("personas_dir: personas\nmemory: {enabled: false}\n")
    rows = [
        {"at": 0, "channel": "c", "author": "u", "text": "@a a bakery?"},
        {"at": 3 * DAY, "channel": "d", "author": "u", "text": "@a hello again"},
    ]
    assert all(r["action"] != "remember" for r in run(fleet_dir, rows, capsys))


def test_check_rejects_memory_on_a_sponsored_persona(fleet_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (fleet_dir / "personas" / "brand.yaml").write_text(
        "id: brand\nname: Brand\nprompt: x\nsponsor: Acme\nmemory: true\n"
    )
    assert main(["check", "--config", str(fleet_dir / "config.yaml")]) != 0
    err = capsys.readouterr()
    text = err.out + err.err
    assert "brand.yaml:5" in text and "memory" in text and "sponsored persona never keeps memory" in text


def test_about_says_what_is_remembered_and_for_how_long() -> None:
    fleet, _, _ = make_fleet([persona("a")], config={"retention_days": 14})
    text = about_text(fleet)
    assert "/memory" in text and "14 days" in text and "sponsored personas keep none" in text
    off, _, _ = make_fleet([persona("a")], config={"memory": {"enabled": False}})
    assert "/memory" not in about_text(off)
    assert FleetConfig().memory.enabled
