"""The `botfleet` command: run | check | personas | simulate | why | status | reload | import | export."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import logging.handlers
import os
import stat
import sys
from pathlib import Path
from typing import Any

from adapters.registry import names as platform_names
from bots.app import App, SetupError, make_adapters, make_llm
from bots.cards.cli import cmd_export, cmd_import
from bots.core.safety.checks import safety_warnings
from bots.loading import config_or_reported, loaded_or_reported
from bots.ops.admin import fetch_why, format_why
from bots.ops.control import Unreachable, publish_reload, shared_status, shared_why
from bots.ops.logs import configure, persona_secrets
from bots.ops.reload import signal_reload
from bots.simulate import simulate

log = logging.getLogger("botfleet")


LOG_FILE = "botfleet.log"


class TerminalHandler(logging.StreamHandler):  # type: ignore[type-arg,unused-ignore]
    """Writes to sys.stderr as it is at each line: under the console's prompt that is prompt_toolkit's
    proxy, which prints above the line being typed instead of over it."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def setup_logging(level: str = "INFO", *, hold: bool = False) -> None:
    """Log to stderr; with hold, keep the lines until settle_logging knows whether a person is typing
    into the console on this terminal (then they go to a file instead of into the chat)."""
    handler: logging.Handler = TerminalHandler()
    if hold:
        handler = logging.handlers.MemoryHandler(capacity=100_000, flushLevel=logging.CRITICAL + 1)
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=[handler],
    )
    # httpx logs request URLs, and Telegram URLs carry the bot token.
    for noisy in ("httpx", "httpx2", "httpcore", "telegram.ext", "discord", "openai", "hpack"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def settle_logging(log_file: Path | None) -> str | None:
    """Replace the held handler (if any) by where the lines go now, and replay what it kept: with
    log_file, a file plus warnings on the terminal, else the terminal. Returns what to tell the user."""
    root = logging.getLogger()
    held = next((h for h in root.handlers if isinstance(h, logging.handlers.MemoryHandler)), None)
    if held is None:
        return None
    terminal = TerminalHandler()
    handlers: list[logging.Handler] = [terminal]
    said = None
    if log_file is not None:
        terminal.setLevel(logging.WARNING)
        try:
            handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
            said = f"botfleet: log lines go to {log_file}; warnings also show here"
        except OSError as exc:
            said = f"botfleet: cannot write {log_file} ({exc.strerror}); only warnings show here"
    for handler in handlers:
        handler.setFormatter(held.formatter)
        for f in held.filters:
            handler.addFilter(f)
        root.addHandler(handler)
    root.removeHandler(held)
    for record in held.buffer:
        for handler in handlers:
            if record.levelno >= handler.level:
                handler.handle(record)
    held.close()
    return said


def log_file_beside(config: Path | None) -> Path:
    return (config or Path("config.yaml")).resolve().parent / LOG_FILE


def cmd_check(args: argparse.Namespace) -> int:
    if (loaded := loaded_or_reported(args.config)) is None:
        return 2
    cfg, personas = loaded
    for p in personas:
        print(p.describe())
    for warning in safety_warnings(cfg, personas):
        print(f"warning: {warning}", file=sys.stderr)
    print(f"ok: {len(personas)} personas, store {cfg.store.split('@')[-1]}", file=sys.stderr)
    return 0


def cmd_personas(args: argparse.Namespace) -> int:
    if (loaded := loaded_or_reported(args.config)) is None:
        return 2
    for p in loaded[1]:
        print(f"{p.id:<18} {p.name:<24} {p.display_bio}")
    return 0


def console_input() -> bool:
    """Whether stdin can feed the console: a tty, a pipe or a file can; /dev/null (a character device
    that is not a terminal) or a closed stdin cannot."""
    try:
        mode = os.fstat(sys.stdin.fileno()).st_mode
    except (AttributeError, OSError, ValueError):
        return False
    return not stat.S_ISCHR(mode) or sys.stdin.isatty()


async def _run(args: argparse.Namespace) -> int:
    if (loaded := loaded_or_reported(args.config, sys.stderr)) is None:
        return 2
    cfg, personas = loaded
    # Before anything logs: the chosen format, and every configured secret masked.
    configure(cfg, json_lines=cfg.logging.json_lines, extra_secrets=persona_secrets(personas))
    try:
        llm = make_llm(cfg)
        adapters = make_adapters(cfg, personas, args.adapter, terminal=sys.stdin.isatty() and sys.stdout.isatty())
    except SetupError as exc:
        print(f"botfleet: {exc}", file=sys.stderr)
        return 2
    if not adapters:
        # Only --adapter can leave nothing: a fleet on no platform would idle forever, saying nothing.
        wanted = " or ".join(f"adapters.{n}.token (or a persona's platforms.{n}.token)" for n in args.adapter or [])
        print(f"botfleet: nothing to run: set {wanted}", file=sys.stderr)
        return 2
    # A person typing into the console on this terminal: log lines would land in the chat.
    typing = any(getattr(a, "interactive", False) for a in adapters)
    if said := settle_logging(log_file_beside(args.config) if typing else None):
        print(said, file=sys.stderr)
    if [a.platform for a in adapters] == ["console"] and "console" not in (args.adapter or []) and not console_input():
        # Not even the console has anything to read (a container with stdin on /dev/null): idling would hide it.
        print("botfleet: no platform adapter has a token and there is no console input", file=sys.stderr)
        return 2
    app = App(cfg, personas, llm=llm, adapters=adapters, config_path=args.config)
    try:
        await app.start()
    except SetupError as exc:
        print(f"botfleet: {exc}", file=sys.stderr)
        return 2
    for adapter in adapters:
        if url := getattr(adapter, "url", ""):
            # The one line a newcomer needs: where to open the room (logs may be going to a file).
            print(f"botfleet: {adapter.platform} room at {url}", file=sys.stderr)
    await app.run()
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    setup_logging(args.log_level, hold=sys.stdin.isatty() and sys.stdout.isatty())
    try:
        return asyncio.run(_run(args))
    finally:
        settle_logging(None)  # a run that ended before its adapters were known


def cmd_simulate(args: argparse.Namespace) -> int:
    if (loaded := loaded_or_reported(args.config, sys.stderr)) is None:
        return 2
    cfg, personas = loaded
    try:
        lines = Path(args.transcript).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        print(f"botfleet: cannot read {args.transcript}: {exc.strerror}", file=sys.stderr)
        return 2
    try:
        for record in asyncio.run(simulate(cfg, personas, lines, seed=args.seed, show_all=args.all)):
            print(json.dumps(record, ensure_ascii=False))
    except ValueError as exc:
        print(f"botfleet: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_why(args: argparse.Namespace) -> int:
    url = args.url
    if url is None:
        if (cfg := config_or_reported(args.config)) is None:
            return 2
        if not cfg.store.startswith("memory://"):
            return _why_from_redis(cfg.store, args)
        if cfg.metrics.port is None:
            said = "no metrics.port: the running fleet answers `why` on that port (the shipped config.yaml"
            print(f"botfleet: {said} reads BOTFLEET_METRICS_PORT; set it for the fleet and here)", file=sys.stderr)
            return 2
        host = "127.0.0.1" if cfg.metrics.host in ("0.0.0.0", "::", "") else cfg.metrics.host
        url = f"http://{host}:{cfg.metrics.port}"
    try:
        found = fetch_why(url, args.platform, args.message_id)
    except OSError as exc:
        print(f"botfleet: no running fleet answers at {url}: {exc}", file=sys.stderr)
        return 2
    return _show_why(found, args, "the fleet keeps the last events it handled")


def _why_from_redis(url: str, args: argparse.Namespace) -> int:
    """Every process of the fleet writes its audit to the shared Redis: read it there."""
    try:
        found = asyncio.run(shared_why(url, args.platform, args.message_id))
    except Unreachable as exc:
        print(f"botfleet: cannot read {url.split('@')[-1]}: {exc}", file=sys.stderr)
        return 2
    return _show_why(found, args, "kept for a day after the event")


def _show_why(found: dict[str, Any] | None, args: argparse.Namespace, kept: str) -> int:
    if found is None:
        print(f"{args.platform}:{args.message_id}: not in the audit ({kept})")
        return 1
    print(json.dumps(found, ensure_ascii=False, indent=2) if args.json else format_why(found))
    return 0


def cmd_reload(args: argparse.Namespace) -> int:
    if (loaded := loaded_or_reported(args.config)) is None:
        print("not reloading: the running fleet would reject these files (it keeps its current ones)", file=sys.stderr)
        return 2
    cfg = loaded[0]
    if not cfg.store.startswith("memory://"):
        # Several processes may share this store: ask them all, through Redis.
        try:
            listening = asyncio.run(publish_reload(cfg.store))
        except Unreachable as exc:
            print(f"botfleet: cannot reach {cfg.store.split('@')[-1]}: {exc}", file=sys.stderr)
            return 2
        said = f"reload sent to {listening} running process(es); their logs report the result"
        print(f"botfleet: {said}", file=sys.stderr)
        return 0 if listening else 1
    pid, said = signal_reload(cfg)
    print(f"botfleet: {said}", file=sys.stderr)
    return 0 if pid is not None else 1


def cmd_status(args: argparse.Namespace) -> int:
    if (cfg := config_or_reported(args.config)) is None:
        return 2
    where = cfg.store.split("@")[-1]  # never print a password from the URL
    if cfg.store.startswith("memory://"):
        print("store is memory://: one process, nothing shared (set store: redis://... or REDIS_URL)")
        return 1
    try:
        print(asyncio.run(shared_status(cfg.store)))
    except Unreachable as exc:
        print(f"botfleet: cannot read {where}: {exc}", file=sys.stderr)
        return 2
    return 0


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="botfleet", description="Run a fleet of AI personas.")
    sub = ap.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", type=Path, default=None, help="config file (default: ./config.yaml)")
        return p

    run = with_config(sub.add_parser("run", help="run the fleet"))
    run.add_argument(
        "--adapter",
        action="append",
        choices=platform_names(),
        help="only these adapters (repeatable); default: every adapter with a token, else the console",
    )
    run.add_argument("--log-level", default="INFO")
    run.set_defaults(func=cmd_run)
    check = with_config(sub.add_parser("check", help="validate config.yaml and every persona file"))
    check.set_defaults(func=cmd_check)
    personas = with_config(sub.add_parser("personas", help="list the personas"))
    personas.set_defaults(func=cmd_personas)
    sim = with_config(sub.add_parser("simulate", help="replay a JSONL transcript without the LLM"))
    sim.add_argument("transcript")
    sim.add_argument("--all", action="store_true", help="also print skipped candidates and why")
    sim.add_argument("--seed", type=int, default=0)
    sim.set_defaults(func=cmd_simulate)
    why = with_config(sub.add_parser("why", help="which personas considered a message, and why each spoke or not"))
    why.add_argument("platform", help=", ".join(platform_names()))
    why.add_argument("message_id")
    why.add_argument("--url", help="the fleet's metrics endpoint (default: from metrics.host/port in the config)")
    why.add_argument("--json", action="store_true", help="print the raw JSON")
    why.set_defaults(func=cmd_why)
    st = with_config(sub.add_parser("status", help="which process holds which platform account (Redis store)"))
    st.set_defaults(func=cmd_status)
    reload = with_config(sub.add_parser("reload", help="validate, then make the running fleet re-read its files"))
    reload.set_defaults(func=cmd_reload)
    imp = with_config(sub.add_parser("import", help="a character card (V1/V2/V3, PNG or JSON) as a persona file"))
    imp.add_argument("card", type=Path, help="CARD.png or CARD.json")
    imp.add_argument("--id", help="the persona id (default: from the card's name)")
    imp.add_argument("--out", type=Path, help="where to write ID.yaml (default: the config's personas_dir)")
    imp.add_argument("--force", action="store_true", help="replace an existing file of that id")
    imp.set_defaults(func=cmd_import)
    exp = with_config(sub.add_parser("export", help="a persona as a Character Card V2 (JSON or PNG)"))
    exp.add_argument("persona", help="a persona id, or the path of a persona file")
    exp.add_argument("--png", action="store_true", help="a PNG card (the avatar, or a generated image)")
    exp.add_argument("--out", type=Path, help="the card file (default: ./ID.json or ./ID.png)")
    exp.add_argument("--force", action="store_true", help="replace an existing file")
    exp.set_defaults(func=cmd_export)
    return ap


def main(argv: list[str] | None = None) -> int:
    args: Any = parser().parse_args(argv)
    return int(args.func(args))
