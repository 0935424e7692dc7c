import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from bots.cli import main

ROOT = Path(__file__).resolve().parent.parent


def run(tmp: Path, rows: list[dict], capsys: pytest.CaptureFixture[str], *args: str) -> list[dict]:
    transcript = tmp / "t.jsonl"
    transcript.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert main(["simulate", str(transcript), "--config", str(tmp / "config.yaml"), *args]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


@pytest.fixture
def fleet_dir(tmp_path: Path) -> Path:
    (tmp_path / "personas").mkdir()
    (tmp_path / "personas" / "a.yaml").write_text(
        "id: a\nname: Ann\nprompt: x\ntriggers:\n  - mention: true\n  - reply: true\n  - keywords: [money]\n"
        'reactions:\n  - keywords: [party]\n    emoji: "🎉"\nlimits: {cooldown_seconds: 30}\n'
    )
    (tmp_path / "personas" / "b.yaml").write_text(
        "id: b\nname: Bo\nprompt: x\ntriggers:\n  - keywords: [money]\n  - chance: 0.3\n"
    )
    (tmp_path / "config.yaml").write_text("personas_dir: personas\nfleet: {max_responders: 1, max_bot_chain: 1}\n")
    return tmp_path


def test_simulate_replays_on_virtual_time_with_limits(fleet_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [
        {"at": 0, "channel": "c", "author": "u", "text": "hey @a"},
        {"at": 10, "channel": "c", "author": "u", "text": "hey @a again"},
        {"at": 40, "channel": "c", "author": "u", "text": "thanks", "reply_to": "a"},
        {"at": 41, "channel": "c", "author": "u", "text": "party time"},
        {"at": 42, "channel": "c", "author": "robot", "text": "@a money money", "bot": True},
    ]
    out = run(fleet_dir, rows, capsys, "--all")
    assert {"i": 0, "persona": "a", "action": "reply", "reason": "mention:platform"} in out
    assert any(
        r["i"] == 1 and r["persona"] == "a" and r["action"] == "skip" and r["reason"].startswith("cooldown")
        for r in out
    )
    assert {"i": 2, "persona": "a", "action": "reply", "reason": "reply"} in out
    assert {"i": 3, "persona": "a", "action": "react", "emoji": "🎉", "reason": "keywords:party"} in out
    # Bots outside the fleet are ignored: --all only says who stayed away and why.
    assert {(r["action"], r["reason"]) for r in out if r["i"] == 4} == {("skip", "foreign_bot")}
    without_all = run(fleet_dir, rows, capsys)
    assert all(r["action"] != "skip" for r in without_all)
    assert without_all == [r for r in out if r["action"] != "skip"]


def test_same_seed_same_output(fleet_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [{"at": i * 100, "channel": "c", "author": "u", "text": f"message {i}"} for i in range(60)]
    first = run(fleet_dir, rows, capsys, "--seed", "7", "--all")
    assert first == run(fleet_dir, rows, capsys, "--seed", "7", "--all")
    assert any(r["persona"] == "b" and r["reason"] == "chance:0.3" for r in first)
    assert first != run(fleet_dir, rows, capsys, "--seed", "8", "--all")


def test_max_responders_and_persona_chains_show_as_skips(fleet_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = run(fleet_dir, [{"at": 0, "channel": "c", "author": "u", "text": "money @a"}], capsys, "--all")
    first = [r for r in out if r["i"] == 0]
    assert first[0] == {"i": 0, "persona": "a", "action": "reply", "reason": "mention:platform"}
    assert {"i": 0, "persona": "b", "action": "skip", "reason": "max_responders"} in first


def test_the_shipped_fleet_simulates(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rows = [
        {"at": 0, "channel": "general", "author": "sam", "text": "Should I invest my savings in my friend's startup?"},
        {"at": 5, "channel": "general", "author": "sam", "text": "/panel should I quit my job?"},
        {"at": 300, "channel": "general", "author": "kim", "text": "@skeptic what do you think?"},
    ]
    transcript = tmp_path / "t.jsonl"
    transcript.write_text("\n".join(json.dumps(r) for r in rows))
    assert main(["simulate", str(transcript), "--config", str(ROOT / "config.yaml"), "--seed", "1"]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert 3 <= len([r for r in out if r["i"] == 1 and r["action"] == "reply"]) <= 5
    assert {"i": 2, "persona": "skeptic", "action": "reply", "reason": "mention:platform"} in out


def test_bad_transcript_line_is_a_clear_error(fleet_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    transcript = fleet_dir / "bad.jsonl"
    transcript.write_text('{"at": 0, "channel": "c"}\n')
    assert main(["simulate", str(transcript), "--config", str(fleet_dir / "config.yaml")]) == 2
    assert "line 1: missing 'author'" in capsys.readouterr().err


def test_all_shows_personas_that_stayed_away_from_opted_out_users_and_foreign_bots(
    fleet_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [
        {"at": 0, "channel": "c", "author": "u", "text": "/optout"},
        {"at": 1, "channel": "c", "author": "u", "text": "@a money"},
        {"at": 2, "channel": "c", "author": "robot", "text": "@a money", "bot": True},
    ]
    out = run(fleet_dir, rows, capsys, "--all")
    assert {"i": 1, "persona": "a", "action": "skip", "reason": "opted_out"} in out
    assert {"i": 2, "persona": "a", "action": "skip", "reason": "foreign_bot"} in out
    assert not [r for r in out if r["action"] != "skip"]


def simulate_in_subprocess(transcript: Path, hash_seed: str, *args: str) -> bytes:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    env.pop("REDIS_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "bots", "simulate", str(transcript), "--config", str(ROOT / "config.yaml"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


def test_same_seed_is_byte_identical_across_processes_whatever_the_hash_seed(tmp_path: Path) -> None:
    """Several personas mentioned at once compete for max_responders: who wins must not depend on the
    order a set of names happens to iterate in, which changes with each process's string hashing."""
    picks = random.Random(3)
    names = ["skeptic", "nerd", "supporter", "realist", "optimist", "stoic"]
    rows = [
        {
            "at": i * 7,
            "channel": "general",
            "author": f"u{i % 4}",
            "text": " ".join(f"@{n}" for n in picks.sample(names, 3)),
        }
        for i in range(60)
    ]
    transcript = tmp_path / "t.jsonl"
    transcript.write_text("\n".join(json.dumps(r) for r in rows))
    outputs = {simulate_in_subprocess(transcript, hash_seed, "--seed", "4", "--all") for hash_seed in ("1", "2", "3")}
    assert len(outputs) == 1
    assert outputs.pop().count(b'"action": "reply"') > 30


def test_follow_ups_are_marked_with_the_reply_they_answer(fleet_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # b answers any reply that says "simulated", which every simulated reply does.
    (fleet_dir / "personas" / "b.yaml").write_text("id: b\nname: Bo\nprompt: x\ntriggers:\n  - keywords: [simulated]\n")
    out = run(fleet_dir, [{"at": 0, "channel": "c", "author": "u", "text": "hey @a"}], capsys, "--all")
    assert out[0] == {"i": 0, "persona": "a", "action": "reply", "reason": "mention:platform"}
    assert {
        "i": 0,
        "followup": 1,
        "after": "a",
        "persona": "b",
        "action": "reply",
        "reason": "keywords:simulated",
    } in out
    # b's own reply is a follow-up too; nobody may answer it (b is its author, a has no matching trigger).
    assert all("followup" in r for r in out[1:])
    assert not [r for r in out if r.get("after") == "b" and r["action"] == "reply"]
