from pathlib import Path

import pytest

from bots.cli import main
from bots.config import load_config
from bots.persona import load_personas
from bots.yamlfile import ConfigError, interpolate

ROOT = Path(__file__).resolve().parent.parent


def write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_env_interpolation_with_defaults() -> None:
    env = {"A": "x", "EMPTY": ""}
    assert interpolate("${A}-${B:-dflt}-${EMPTY:-fallback}-${MISSING}", env) == "x-dflt-fallback-"


def test_config_reads_env_and_rejects_unknown_keys(tmp_path: Path) -> None:
    cfg_file = write(tmp_path, "config.yaml", "adapters:\n  discord:\n    token: ${DT}\nfleet:\n  max_responders: 2\n")
    cfg = load_config(cfg_file, env={"DT": "abc"})
    assert cfg.adapters.discord.token == "abc"
    assert cfg.fleet.max_responders == 2
    assert cfg.personas_dir == tmp_path / "personas"

    bad = write(tmp_path, "bad.yaml", "fleet:\n  max_responders: 2\n  max_responder: 3\nllm:\n  provider: gpt\n")
    with pytest.raises(ConfigError) as err:
        load_config(bad, env={})
    text = str(err.value)
    assert f"{bad}:3: fleet.max_responder: unknown field" in text
    assert f"{bad}:5: llm.provider:" in text


def test_redis_url_env_switches_the_store(tmp_path: Path) -> None:
    cfg_file = write(tmp_path, "config.yaml", "store: memory://\n")
    assert load_config(cfg_file, env={"REDIS_URL": "redis://h:1/0"}).store == "redis://h:1/0"


def test_persona_errors_name_file_line_and_field(tmp_path: Path) -> None:
    d = tmp_path / "personas"
    write(d, "a.yaml", "id: Bad Id\nname: A\nprompt: hi\n")
    write(
        d,
        "b.yaml",
        "id: b\nname: B\nprompt: hi\ntriggers:\n  - mention: true\n  - keywords: [x]\n    regex: y\n"
        "  - regex: '(unclosed'\nlimits:\n  per_minute: 0\n",
    )
    write(d, "c.yaml", "id: c\nname: C\nprompt: [unterminated\n")
    write(d, "d.yaml", "id: ok\nname: Ok\nprompt: hi\n")
    write(d, "e.yaml", "id: ok\nname: Dup\nprompt: hi\n")
    with pytest.raises(ConfigError) as err:
        load_personas(d)
    lines = [str(p) for p in err.value.problems]
    assert f"{d / 'a.yaml'}:1: id: id must match [a-z0-9_-]+" in lines
    assert any(line.startswith(f"{d / 'b.yaml'}:6: triggers[2]: a trigger has exactly one kind") for line in lines)
    assert any(line.startswith(f"{d / 'b.yaml'}:8: triggers[3].regex: invalid regular expression") for line in lines)
    assert any(line.startswith(f"{d / 'b.yaml'}:10: limits.per_minute:") for line in lines)
    assert any(line.startswith(f"{d / 'c.yaml'}:") and "invalid YAML" in line for line in lines)
    assert any(line.startswith(f"{d / 'e.yaml'}:1: id: duplicate id") for line in lines)


def test_every_shipped_persona_loads() -> None:
    personas = load_personas(ROOT / "personas")
    assert len(personas) >= 9
    ids = {p.id for p in personas}
    assert {"supporter", "skeptic", "realist"} <= ids
    brand = [p for p in personas if p.sponsor]
    assert brand and all(p.sponsor in p.display_bio for p in brand)


def test_check_prints_every_error_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "personas"
    write(d, "a.yaml", "id: a\nname: A\nprompt: hi\ntriggers:\n  - chance: 2\n")
    write(d, "b.yaml", "id: b\nname: B\nprompt: hi\nlimits: {cooldown_seconds: -1}\n")
    cfg = write(tmp_path, "config.yaml", "personas_dir: personas\nfleet: {max_bot_chain: -1}\n")
    assert main(["check", "--config", str(cfg)]) == 2
    out = capsys.readouterr().out.splitlines()
    assert any(line.startswith(f"{cfg}:2: fleet.max_bot_chain:") for line in out), out


def test_check_collects_config_and_persona_errors_together(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "personas"
    write(d, "a.yaml", "id: a\nname: A\nprompt: hi\ntriggers:\n  - chance: 2\n")
    write(d, "b.yaml", "id: b\nname: B\nprompt: hi\nlimits: {cooldown_seconds: -1}\n")
    cfg = write(tmp_path, "config.yaml", "personas_dir: personas\n")
    assert main(["check", "--config", str(cfg)]) == 2
    out = capsys.readouterr().out.splitlines()
    assert any(line.startswith(f"{d / 'a.yaml'}:5: triggers[1].chance:") for line in out), out
    assert any(line.startswith(f"{d / 'b.yaml'}:4: limits.cooldown_seconds:") for line in out), out


def test_check_succeeds_on_the_shipped_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--config", str(ROOT / "config.yaml")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) >= 9
    assert any(line.startswith("skeptic  triggers=mention") and "limits=" in line for line in out)


def test_check_reports_persona_errors_even_when_the_config_is_broken(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = tmp_path / "people"
    write(d, "a.yaml", "id: a\nname: A\nprompt: hi\ntriggers:\n  - chance: 2\n")
    cfg = write(tmp_path, "config.yaml", "personas_dir: people\nfleet: {max_bot_chain: -1}\n")
    assert main(["check", "--config", str(cfg)]) == 2
    out = capsys.readouterr().out.splitlines()
    assert any(line.startswith(f"{cfg}:2: fleet.max_bot_chain:") for line in out), out
    assert any(line.startswith(f"{d / 'a.yaml'}:5: triggers[1].chance:") for line in out), out


def test_check_flags_feed_personas_that_do_not_exist(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path / "personas", "a.yaml", "id: a\nname: A\nprompt: hi\n")
    cfg = write(
        tmp_path,
        "config.yaml",
        "personas_dir: personas\nfeeds:\n  discord:\n    - {channel: f, personas: [a, skeptci]}\n",
    )
    assert main(["check", "--config", str(cfg)]) == 2
    assert f"{cfg}:4: feeds.discord[1].personas: no persona with id 'skeptci'" in capsys.readouterr().out
