"""`botfleet export` writes V2 cards other tools import, and importing an export gives the persona back."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest

from bots.cards.png import card_texts, check_image, chunks
from bots.cli import main
from bots.persona import Persona, load_persona, load_personas
from tests.card_files import b64, png, text, v2_card, write

REPO = Path(__file__).resolve().parent.parent
V2_FIELDS = {
    "name", "description", "personality", "scenario", "first_mes", "mes_example", "creator_notes", "system_prompt",
    "post_history_instructions", "alternate_greetings", "tags", "creator", "character_version", "extensions",
}  # fmt: skip


def comparable(p: Persona) -> dict[str, Any]:
    # Tokens are never exported; the id is the file's, chosen on import.
    return p.model_dump(exclude={"platforms", "id"})


@pytest.mark.parametrize("png_card", [False, True], ids=["json", "png"])
def test_every_shipped_persona_survives_export_then_import(tmp_path: Path, png_card: bool) -> None:
    for original in load_personas(REPO / "personas"):
        card = tmp_path / f"{original.id}.{'png' if png_card else 'json'}"
        assert (
            main(["export", str(REPO / "personas" / f"{original.id}.yaml"), "--out", str(card)] + ["--png"] * png_card)
            == 0
        )
        assert main(["import", str(card), "--out", str(tmp_path / "back"), "--id", original.id]) == 0
        back = load_persona(tmp_path / "back" / f"{original.id}.yaml")
        if png_card:
            # A PNG card brings its image: the avatar becomes that file (the URL was not fetched).
            assert back.avatar == f"{original.id}.png"
            back = back.model_copy(update={"avatar": original.avatar})
        assert comparable(back) == comparable(original), original.id


def test_an_imported_card_exports_and_imports_back_the_same_including_its_avatar(tmp_path: Path) -> None:
    assert (
        main(
            [
                "import",
                str(write(tmp_path / "mira.png", png(text("chara", b64(v2_card()))))),
                "--out",
                str(tmp_path / "a"),
            ]
        )
        == 0
    )
    mira = load_persona(tmp_path / "a" / "mira.yaml")
    assert main(["export", str(tmp_path / "a" / "mira.yaml"), "--png", "--out", str(tmp_path / "out.png")]) == 0
    # The exported PNG is the avatar's own image with the card added.
    exported = list(chunks((tmp_path / "out.png").read_bytes()))
    avatar = list(chunks((tmp_path / "a" / "mira.png").read_bytes()))
    assert [c for c in exported if c.kind != b"tEXt"] == avatar
    assert main(["import", str(tmp_path / "out.png"), "--out", str(tmp_path / "b")]) == 0
    again = load_persona(tmp_path / "b" / "mira.yaml")
    assert again.greeting == mira.greeting and again.card == mira.card
    assert comparable(again) == comparable(mira)


def test_the_export_is_a_v2_card_with_every_field_and_no_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NERD_DISCORD_TOKEN", "discord-secret-123")
    src = (REPO / "personas" / "nerd.yaml").read_text(encoding="utf-8")
    (tmp_path / "nerd.yaml").write_text(
        src + 'platforms: {discord: {token: "${NERD_DISCORD_TOKEN}"}}\n', encoding="utf-8"
    )
    assert load_persona(tmp_path / "nerd.yaml").platforms.discord.token == "discord-secret-123"  # type: ignore[union-attr]
    assert main(["export", str(tmp_path / "nerd.yaml"), "--out", str(tmp_path / "nerd.json")]) == 0
    raw = (tmp_path / "nerd.json").read_text(encoding="utf-8")
    assert "discord-secret-123" not in raw and "NERD_DISCORD_TOKEN" not in raw
    card = json.loads(raw)
    assert (card["spec"], card["spec_version"]) == ("chara_card_v2", "2.0")
    assert set(card["data"]) == V2_FIELDS
    assert card["data"]["name"] == card["name"] == "The Nerd"  # V1 readers find the old fields at the top
    assert card["description"] == card["data"]["description"] and card["first_mes"] == ""
    assert card["data"]["mes_example"].startswith("<START>\n{{user}}: Is it worth paying 40 dollars")


def test_a_png_export_without_an_avatar_file_is_a_generated_image_that_decodes(tmp_path: Path) -> None:
    assert (
        main(["export", "nerd", "--config", str(REPO / "config.yaml"), "--png", "--out", str(tmp_path / "n.png")]) == 0
    )
    raw = (tmp_path / "n.png").read_bytes()
    found = check_image(raw)
    width, height, depth, colour = struct.unpack(">IIBB", found[0].data[:10])
    pixels = zlib.decompress(b"".join(c.data for c in found if c.kind == b"IDAT"))
    assert (width, height, depth, colour) == (256, 256, 8, 2)
    assert len(pixels) == 256 * (1 + 256 * 3) and pixels[0] == 0  # every row: filter byte, RGB pixels
    card = json.loads(base64.b64decode(card_texts(found)["chara"]))
    assert card["data"]["name"] == "The Nerd"


def test_export_refuses_to_overwrite_and_names_unknown_personas(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "n.json"
    out.write_text("keep me")
    assert main(["export", "nerd", "--config", str(REPO / "config.yaml"), "--out", str(out)]) == 2
    assert out.read_text() == "keep me"
    assert main(["export", "nobody", "--config", str(REPO / "config.yaml"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "exists (--force replaces it)" in err and "no persona with id 'nobody'" in err


def test_an_avatar_file_that_is_not_a_png_gives_way_to_a_generated_image(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "p.yaml").write_text("id: p\nname: P\navatar: p.jpg\nprompt: You are P.\n", encoding="utf-8")
    (tmp_path / "p.jpg").write_bytes(b"\xff\xd8\xff\xe0 a jpeg")
    assert main(["export", str(tmp_path / "p.yaml"), "--png", "--out", str(tmp_path / "card.png")]) == 0
    assert "not a PNG file (bad signature); a generated image is used" in capsys.readouterr().err
    found = check_image((tmp_path / "card.png").read_bytes())
    assert json.loads(base64.b64decode(card_texts(found)["chara"]))["data"]["name"] == "P"
