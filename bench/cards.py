"""How long `botfleet import` takes on large and hostile cards: python bench/cards.py

Prints one line per case: what was read, how long it took, and how it ended. Refusals should cost about
nothing whatever the file claims (image data is never inflated; a 50 MB file is never read)."""

from __future__ import annotations

import os
import sys
import tempfile
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bots.cards import CardError
from bots.cards.commands import import_card
from tests.card_files import b64, chunk, ihdr, png, text, v3_card

MB = 1024 * 1024


def cases(tmp: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    art = chunk(b"IDAT", os.urandom(15 * MB))  # 15 MB of incompressible "art"
    out["15 MB image, V3 card"] = tmp / "art.png"
    out["15 MB image, V3 card"].write_bytes(png(art, text("ccv3", b64(v3_card()))))
    book = {"entries": [{"keys": [f"k{n}"], "content": "lore " * 200} for n in range(3000)]}
    out["3 MB lorebook in the card"] = tmp / "book.png"
    out["3 MB lorebook in the card"].write_bytes(png(text("chara", b64(v3_card(character_book=book)))))
    out["PNG bomb 200000x200000"] = tmp / "bomb.png"
    bomb = chunk(b"IDAT", zlib.compress(b"\0" * (64 * MB), 9))
    out["PNG bomb 200000x200000"].write_bytes(png(bomb, text("chara", b64(v3_card())), header=ihdr(200_000, 200_000)))
    out["zTXt bomb (1 GB claimed)"] = tmp / "ztxt.png"
    inflater = zlib.compressobj(9)
    blob = b"".join(inflater.compress(b"A" * (64 * MB)) for _ in range(16)) + inflater.flush()
    out["zTXt bomb (1 GB claimed)"].write_bytes(png(chunk(b"zTXt", b"chara\0\0" + blob)))
    out["50 MB file"] = tmp / "big.png"
    with out["50 MB file"].open("wb") as f:
        f.write(png(text("chara", b64(v3_card()))))
        f.truncate(50 * MB)
    return out


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for n, (name, path) in enumerate(cases(tmp).items()):
            start = time.perf_counter()
            try:
                import_card(path, tmp / "personas", f"p{n}")
                result = "imported"
            except CardError as exc:
                result = f"refused: {exc}"
            ms = (time.perf_counter() - start) * 1000
            print(f"{name:<28} {path.stat().st_size / MB:6.1f} MB  {ms:8.1f} ms  {result}")


if __name__ == "__main__":
    main()
