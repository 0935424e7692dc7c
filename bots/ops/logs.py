"""Logging for operators: one JSON object per line (`logging.json: true`), secrets masked, and one
line per routing decision.

One masker (`SECRETS`, process-wide) replaces every known secret by `***`: every configured token
and key, every environment variable whose name says it is a secret, the password of a store URL,
and whatever an adapter registers with `mask_secrets` (Telegram: the secret half of each bot
token). It works twice: `MaskingFilter` cleans the record itself (message, traceback, stack) on the
root handlers and on loggers known to carry secrets, so capturing handlers and third-party loggers
never see one; `RedactingFormatter` masks the finished line as a last line of defence. Secrets are
added and never removed, so a late log line cannot leak a stopped bot's token. Decision lines carry
ids, persona, trigger, reason and latency; message text never goes into an INFO line.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from adapters import registry as platforms
from bots.config import FleetConfig
from bots.core.events import Command, Message

if TYPE_CHECKING:
    from bots.core.fleet import Fleet
    from bots.core.plan import Plan

log = logging.getLogger("botfleet.decision")

PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
SECRET_NAME = re.compile(r"(TOKEN|KEY|SECRET|PASSWORD|PASSWD|CREDENTIALS?)$", re.IGNORECASE)
# Shorter values would mask ordinary words; no real token is this short.
MIN_SECRET = 6


def secrets_of(cfg: FleetConfig | None, env: Mapping[str, str] | None = None) -> list[str]:
    env = os.environ if env is None else env
    found: set[str] = set()
    for name, value in env.items():
        if SECRET_NAME.search(name):
            found.add(value)
        elif name.endswith("_URL"):
            found.add(_url_password(value))
    if cfg is not None:
        found.update(
            [
                cfg.llm.api_key or "",
                *platforms.config_secrets(cfg),
                _url_password(cfg.store),
            ]
        )
    return sorted((s for s in found if len(s) >= MIN_SECRET), key=len, reverse=True)


def persona_secrets(personas: Iterable[Any]) -> list[str]:
    return [s for s in platforms.persona_secrets(list(personas)) if len(s) >= MIN_SECRET]


def _url_password(url: str) -> str:
    try:
        return urlsplit(url).password or ""
    except ValueError:
        return ""


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


MASK = "***"


class SecretMask:
    """A set of secrets and the one function that blanks them out of text (longest first, so a
    secret that contains another is masked whole)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        fresh = {s for s in secrets if len(s) >= MIN_SECRET} - self._secrets
        if fresh:
            self._secrets |= fresh
            ordered = sorted(self._secrets, key=len, reverse=True)
            self._pattern = re.compile("|".join(map(re.escape, ordered)))

    def found_in(self, text: str) -> bool:
        return self._pattern is not None and self._pattern.search(text) is not None

    def mask(self, text: str) -> str:
        return self._pattern.sub(MASK, text) if self._pattern is not None else text


# Process-wide, like the logging module it guards.
SECRETS = SecretMask()


class MaskingFilter(logging.Filter):
    """Cleans a record in place, before any handler formats or captures it.

    A logger's filters see only records logged on that very logger (not its children's), so
    `mask_secrets` puts it on the root handlers and on each logger named as carrying secrets.
    """

    def __init__(self, mask: SecretMask) -> None:
        super().__init__()
        self.mask = mask

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is the logging module's business, not ours
            return True
        if self.mask.found_in(message):
            record.msg, record.args = self.mask.mask(message), None
        if record.exc_info and not record.exc_text:
            # Cached where every Formatter looks for it, so the traceback is formatted clean.
            text = logging.Formatter().formatException(record.exc_info)
            if self.mask.found_in(text):
                record.exc_text = self.mask.mask(text)
        elif record.exc_text:
            record.exc_text = self.mask.mask(record.exc_text)
        if record.stack_info:
            record.stack_info = self.mask.mask(record.stack_info)
        return True


MASKING = MaskingFilter(SECRETS)


def mask_secrets(secrets: Iterable[str], loggers: Iterable[str] = ()) -> None:
    """Mask these secrets in every log line from now on, and clean records at the named loggers
    (for libraries that log secrets before any handler of ours could see them)."""
    SECRETS.add(secrets)
    for handler in logging.getLogger().handlers:
        handler.addFilter(MASKING)  # addFilter ignores a filter already there
    for name in loggers:
        logging.getLogger(name).addFilter(MASKING)


class RedactingFormatter(logging.Formatter):
    """Formats with `inner`, then masks every secret in the finished line."""

    def __init__(self, inner: logging.Formatter, secrets: SecretMask | Iterable[str] = SECRETS) -> None:
        super().__init__()
        self.inner = inner
        self.mask = secrets if isinstance(secrets, SecretMask) else SecretMask(secrets)

    def format(self, record: logging.LogRecord) -> str:
        return self.mask.mask(self.inner.format(record))


def configure(cfg: FleetConfig | None, *, json_lines: bool = False, extra_secrets: Iterable[str] = ()) -> None:
    """Give every root handler the chosen format and the secret mask (call once config is known)."""
    inner: logging.Formatter = JsonFormatter() if json_lines else logging.Formatter(PLAIN_FORMAT)
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler())
    mask_secrets([*secrets_of(cfg), *extra_secrets])
    formatter = RedactingFormatter(inner, SECRETS)
    for handler in root.handlers:
        handler.setFormatter(formatter)


def trigger_of(plan: Plan) -> str:
    event = plan.event
    if isinstance(event, Command):
        return f"command:{event.name}"
    assert isinstance(event, Message)
    if event.author.persona_id:
        return f"persona:{event.author.persona_id}"
    if event.is_post:
        return "post"
    return "dm" if event.is_dm else "message"


class DecisionLog:
    """A fleet listener: one INFO line per decision (who considered the event, what they did, why)."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet

    def __call__(self, plan: Plan) -> None:
        if not plan.decisions:
            if plan.note and log.isEnabledFor(logging.DEBUG):
                log.debug("event %s: %s", plan.event.key, plan.note)
            return
        if not log.isEnabledFor(logging.INFO):
            return
        latency_ms = round(max(0.0, self.fleet.clock() - plan.at) * 1000, 2)
        trigger = trigger_of(plan)
        for d in plan.decisions:
            log.info(
                "decision %s %s %s %s: %s (%.2f ms)",
                plan.event.key,
                trigger,
                d.persona_id,
                d.action,
                d.reason,
                latency_ms,
                extra={
                    "fields": {
                        "event": plan.event.key,
                        "trigger": trigger,
                        "persona": d.persona_id,
                        "action": d.action,
                        "reason": d.reason,
                        "latency_ms": latency_ms,
                    }
                },
            )
