"""Malformed cards: one clear line, exit 2, nothing written. Nothing here decodes image data."""

from __future__ import annotations

import base64
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from bots.cli import main
from tests.card_files import SIGNATURE, b64, chunk, idat, ihdr, png, text, v2_card

MB = 1024 * 1024


def ztxt(keyword: str, payload: bytes) -> bytes:
    return chunk(b"zTXt", keyword.encode() + b"\0\0" + zlib.compress(payload))


def itxt(keyword: str, payload: bytes, compressed: bool = True) -> bytes:
    body = zlib.compress(payload) if compressed else payload
    return chunk(b"iTXt", keyword.encode() + b"\0" + bytes([int(compressed), 0]) + b"en\0\0" + body)


def bomb_text() -> bytes:
    # 24 MB of base64-looking text inflates from about 24 KB: past the 8 MB cap for a card.
    return zlib.compress(b"A" * (24 * MB), 9)


CASES: dict[str, tuple[bytes, str]] = {
    "bad base64": (png(text("chara", b"not*base64!")), "the 'chara' chunk is not valid base64"),
    "bad JSON in the chunk": (
        png(text("chara", base64.b64encode(b'{"spec": "chara_card_v2", '))),
        "the 'chara' chunk is not valid JSON: Expecting property name",
    ),
    "JSON that is not an object": (png(text("chara", base64.b64encode(b"[1, 2]"))), "JSON that is not an object"),
    "no card chunk": (png(text("Software", b"paint")), "no character card in this PNG (no 'chara' or 'ccv3'"),
    "wrong spec": (png(text("chara", b64({**v2_card(), "spec": "chara_card_v9"}))), "unknown spec 'chara_card_v9'"),
    "wrong spec_version": (
        png(text("chara", b64({**v2_card(), "spec_version": "1.0"}))),
        "spec_version '1.0' is not '2.0' for spec chara_card_v2",
    ),
    "wrong V3 spec_version": (
        png(text("ccv3", b64({"spec": "chara_card_v3", "spec_version": 3, "data": v2_card()["data"]}))),
        "spec_version 3 is not '3.x'",
    ),
    "a field of the wrong type": (
        png(text("chara", b64(v2_card(description=["a", "list"])))),
        "data.description: input should be a valid string",
    ),
    "no data": (png(text("chara", b64({"spec": "chara_card_v2", "spec_version": "2.0"}))), "'data' is missing"),
    "no name": (png(text("chara", b64(v2_card(name="  ")))), "data.name is empty"),
    "neither spec nor V1 name": (png(text("chara", b64({"hello": "world"}))), "not a character card"),
    "truncated chunk": (SIGNATURE + ihdr() + idat()[:-6], "truncated PNG: chunk 2 claims"),
    "no IEND": (SIGNATURE + ihdr() + idat(), "truncated PNG: it ends before its IEND chunk"),
    "bad checksum": (png(chunk(b"tEXt", b"chara\0" + b64(v2_card()), crc=1)), "the tEXt chunk fails its checksum"),
    "bad signature": (b"\x89PNX\r\n\x1a\n" + ihdr(), "not a PNG file (bad signature)"),
    "first chunk not IHDR": (SIGNATURE + idat() + chunk(b"IEND", b""), "the first chunk is not IHDR"),
    "image bomb": (
        png(text("chara", b64(v2_card())), header=ihdr(200_000, 200_000)),
        "PNG image is 200000x200000 pixels: refused",
    ),
    "zTXt bomb": (png(chunk(b"zTXt", b"chara\0\0" + bomb_text())), "inflates past 8 MB (a bomb?)"),
    "iTXt bomb": (png(chunk(b"iTXt", b"ccv3\0\1\0en\0\0" + bomb_text())), "inflates past 8 MB (a bomb?)"),
    "zTXt that does not inflate": (png(chunk(b"zTXt", b"chara\0\0garbage")), "compressed text that does not inflate"),
}


@pytest.mark.parametrize("case", CASES)
def test_a_malformed_png_card_is_one_line_and_exit_2_and_writes_nothing(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, expected = CASES[case]
    card = tmp_path / "card.png"
    card.write_bytes(data)
    out = tmp_path / "personas"
    assert main(["import", str(card), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"botfleet: {card}: "), err
    assert expected in err, err
    assert not out.exists()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b'{"spec": "chara_card_v2", "spec_version": "2.0", "data": {"name": "x",}}', "the file is not valid JSON"),
        (b"\xff\xfe{}", "the file is not UTF-8 (byte 0xff at offset 0)"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'"a string"', "holds JSON that is not an object"),
    ],
)
def test_a_malformed_json_card_is_one_line_and_exit_2(
    content: bytes, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    card = tmp_path / "card.json"
    card.write_bytes(content)
    assert main(["import", str(card), "--out", str(tmp_path / "personas")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err, err
    assert not (tmp_path / "personas").exists()


def test_a_50_mb_card_is_refused_before_it_is_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    card = tmp_path / "huge.png"
    with card.open("wb") as f:
        f.write(png(text("chara", b64(v2_card()))))
        f.truncate(50 * MB)  # sparse: the size is real, the disk stays empty
    assert main(["import", str(card), "--out", str(tmp_path / "personas")]) == 2
    err = capsys.readouterr().err
    assert err == f"botfleet: {card}: 50.0 MB is over the 20 MB limit for a card\n"
    assert not (tmp_path / "personas").exists()


def test_compressed_text_chunks_within_the_cap_are_read(tmp_path: Path) -> None:
    payload = b64(v2_card())
    for n, extra in enumerate((ztxt("chara", payload), itxt("ccv3", payload), itxt("chara", payload, False))):
        card = tmp_path / f"card{n}.png"
        card.write_bytes(png(extra))
        assert main(["import", str(card), "--out", str(tmp_path / "p"), "--id", f"c{n}"]) == 0


def test_the_botfleet_command_itself_exits_2_with_one_line(tmp_path: Path) -> None:
    card = tmp_path / "card.png"
    card.write_bytes(png(text("chara", b"%%%")))
    run = [sys.executable, "-m", "bots", "import", str(card), "--out", str(tmp_path / "p")]
    done = subprocess.run(run, capture_output=True, text=True, timeout=60, check=False)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == f"botfleet: {card}: the 'chara' chunk is not valid base64\n"
    assert not (tmp_path / "p").exists()


def test_base64_without_its_padding_is_still_read(tmp_path: Path) -> None:
    card = tmp_path / "card.png"
    payload = b64(v2_card(name="Miaa"))
    assert payload.endswith(b"==")
    card.write_bytes(png(text("chara", payload.rstrip(b"="))))
    assert main(["import", str(card), "--out", str(tmp_path / "p"), "--id", "miaa"]) == 0
