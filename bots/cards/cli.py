"""The `import` and `export` subcommands behind bots/cli.py's argparse: one line per problem, exit 2."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bots.cards import CardError
from bots.cards.commands import export_persona, import_card
from bots.loading import loaded_or_reported, raw_personas_dir
from bots.persona import Persona, load_persona
from bots.yamlfile import ConfigError


def cmd_import(args: argparse.Namespace) -> int:
    out = args.out if args.out is not None else raw_personas_dir(args.config)
    try:
        written, notes = import_card(args.card, out, args.id, args.force)
    except CardError as exc:
        print(f"botfleet: {args.card}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"botfleet: cannot write to {out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    for note in notes:
        print(f"not mapped: {note}", file=sys.stderr)
    print(f"wrote {written}; `botfleet check` validates it with the rest of the fleet", file=sys.stderr)
    return 0


def _persona(args: argparse.Namespace) -> Persona | None:
    path = Path(args.persona)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        try:
            return load_persona(path)
        except ConfigError as exc:
            for p in exc.problems:
                print(p, file=sys.stderr)
            return None
    if (loaded := loaded_or_reported(args.config, sys.stderr)) is None:
        return None
    found = next((p for p in loaded[1] if p.id == args.persona), None)
    if found is None:
        print(f"botfleet: no persona with id {args.persona!r}", file=sys.stderr)
    return found


def cmd_export(args: argparse.Namespace) -> int:
    if (persona := _persona(args)) is None:
        return 2
    dest = args.out if args.out is not None else Path(f"{persona.id}.{'png' if args.png else 'json'}")
    try:
        notes = export_persona(persona, dest, args.png, args.force)
    except CardError as exc:
        print(f"botfleet: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"botfleet: cannot write {dest}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"wrote {dest} (Character Card V2)", file=sys.stderr)
    return 0
