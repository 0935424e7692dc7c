"""`botfleet import` and `botfleet export`: files in, files out, nothing written unless all is well."""

from __future__ import annotations

import base64
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from bots.cards import CardError
from bots.cards.from_persona import to_card
from bots.cards.png import Chunk, check_image, placeholder, with_card, without_card
from bots.cards.read import read_bytes, read_card
from bots.cards.spec import parse_card
from bots.cards.to_persona import slug, to_persona
from bots.persona import ID_RE, Persona
from bots.yamlfile import dotted

ORDER = ("id", "name", "avatar", "bio", "sponsor", "prompt", "greeting", "examples", "model", "triggers")


class _Dumper(yaml.SafeDumper):
    pass


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # Multi-line text as a block, as people write persona files (the emitter quotes it when it must).
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _text)


def persona_yaml(data: dict[str, Any], source: str, version: int) -> str:
    ordered = {k: data[k] for k in ORDER if k in data} | {k: v for k, v in data.items() if k not in ORDER}
    # A file name goes into a comment line: nothing in it may end that line (YAML breaks at U+2028 too).
    source = "".join(c if c.isprintable() else "?" for c in source)
    head = (
        f"# Imported from {source} (Character Card V{version}) by `botfleet import`.\n"
        "# Card text is kept as written: a ${...} in prompt, greeting or examples stays literal text.\n"
    )
    return head + yaml.dump(ordered, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=120)


def import_card(
    path: Path, out_dir: Path, persona_id: str | None = None, force: bool = False
) -> tuple[Path, list[str]]:
    """Writes OUT/ID.yaml (and OUT/ID.png from a PNG card); returns the YAML path and what was not mapped."""
    found = read_card(path)
    card = parse_card(found.data)
    pid = persona_id or slug(card.data.name)
    if not ID_RE.match(pid):
        raise CardError(f"id {pid!r} must match [a-z0-9_-]+")
    target = out_dir / f"{pid}.yaml"
    avatar = out_dir / f"{pid}.png" if found.image is not None else None
    for existing in (target, avatar):
        if existing is not None and existing.exists() and not force:
            raise CardError(f"{existing} exists (--force replaces it, --id picks another id)")
    if (other := _id_taken(out_dir, pid, target)) is not None:
        raise CardError(f"id {pid!r} is already used by {other} (--id picks another)")
    data, notes = to_persona(card, pid, avatar.name if avatar else None)
    text = persona_yaml(data, path.name, card.version)
    try:
        Persona.model_validate(yaml.safe_load(text))
    except ValidationError as exc:
        err = exc.errors()[0]
        raise CardError(f"the persona made from this card is not valid: {dotted(err['loc'])}: {err['msg']}") from None
    out_dir.mkdir(parents=True, exist_ok=True)
    if avatar is not None and found.image is not None:
        _write(avatar, without_card(found.image))
    _write(target, text.encode("utf-8"))
    return target, notes


def _id_taken(out_dir: Path, pid: str, target: Path) -> Path | None:
    if not out_dir.is_dir():
        return None
    for path in sorted([*out_dir.glob("*.yaml"), *out_dir.glob("*.yml")]):
        if path == target:
            continue
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue  # `check` reports broken files; here only a clash matters
        if isinstance(data, dict) and data.get("id") == pid:
            return path
    return None


def export_persona(persona: Persona, dest: Path, png: bool, force: bool = False) -> list[str]:
    """Writes persona as a V2 card to dest (JSON, or PNG with a `chara` chunk); returns notes."""
    if dest.exists() and not force:
        raise CardError(f"{dest} exists (--force replaces it)")
    card = to_card(persona)
    notes = []
    if persona.platforms.discord or persona.platforms.telegram or persona.platforms.model_extra:
        notes.append("platforms: not exported (tokens stay here)")
    if not png:
        _write(dest, (json.dumps(card, ensure_ascii=False, indent=2) + "\n").encode("utf-8"))
        return notes
    image, said = _avatar_image(persona)
    notes += said
    payload = base64.b64encode(json.dumps(card, ensure_ascii=False).encode("utf-8"))
    _write(dest, with_card(image, "chara", payload))
    return notes


def _avatar_image(persona: Persona) -> tuple[list[Chunk], list[str]]:
    """The persona's avatar PNG when it is a file on disk, else a generated flat image."""
    if persona.avatar and not persona.avatar_url:
        source = persona.line_of()[0]
        path = (Path(source).parent if source else Path()) / persona.avatar
        try:
            return check_image(read_bytes(path)), []
        except CardError as exc:
            return placeholder(persona.id), [f"avatar {path}: {exc}; a generated image is used"]
    if persona.avatar:
        return placeholder(persona.id), ["avatar is a URL (not fetched): a generated image is used"]
    return placeholder(persona.id), []


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _write(path: Path, data: bytes) -> None:
    # Whole or not at all: a crash mid-write must not leave half a persona for `check` to trip on.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; these are ordinary files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
