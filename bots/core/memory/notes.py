"""What a persona remembers about a person: short dated notes, bounded, never a secret verbatim.

A `NoteBook` is one owner's notes about one person; the owner is a persona id, or `SHARED` when the
fleet lets personas share what they know of a person (memory.shared). `version` counts the writes of
that book, so a store can write it compare-and-set: of two processes summarising the same person,
only the first write lands and the second is dropped rather than undoing it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

SHARED = "shared"


@dataclass(frozen=True, slots=True)
class Note:
    text: str
    at: float
    conversation: str
    persona: str  # the owner: a persona id or SHARED
    # A dilemma or plan the person had not resolved when the note was written.
    open: bool = False

    def to_dict(self) -> dict[str, object]:
        return {
            "text": self.text,
            "at": self.at,
            "conversation": self.conversation,
            "persona": self.persona,
            "open": self.open,
        }

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> Note:
        return cls(
            text=str(d["text"]),
            at=float(d["at"]),  # type: ignore[arg-type]
            conversation=str(d.get("conversation") or ""),
            persona=str(d.get("persona") or ""),
            open=bool(d.get("open", False)),
        )


@dataclass(frozen=True, slots=True)
class NoteBook:
    notes: tuple[Note, ...] = ()
    version: int = 0
    # When the notes were last rewritten: turns older than this are already summarised.
    updated: float = 0.0

    def to_dict(self) -> dict[str, object]:
        return {"notes": [n.to_dict() for n in self.notes], "version": self.version, "updated": self.updated}

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> NoteBook:
        raw = d.get("notes") or []
        assert isinstance(raw, list)
        return cls(
            notes=tuple(Note.from_dict(n) for n in raw),
            version=int(d.get("version") or 0),  # type: ignore[call-overload]
            updated=float(d.get("updated") or 0.0),  # type: ignore[arg-type]
        )

    def without_before(self, cutoff: float) -> NoteBook:
        """The book minus notes written before cutoff (retention), same version."""
        return replace(self, notes=tuple(n for n in self.notes if n.at >= cutoff))


# What a note must never hold. The summariser is told to leave these out; a note that still matches
# is dropped whole, since a paraphrase around a secret would keep the secret.
SECRET_PATTERNS = (
    # Card, account and phone numbers, one-time codes: runs of 6+ digits, spaces and dashes allowed.
    re.compile(r"\d(?:[ -]?\d){5,}"),
    re.compile(r"\b(?:password|passwort|passcode|passphrase|pin|otp|cvv|cvc|iban|ssn|2fa|seed phrase)\b", re.I),
    # API keys and tokens: long runs of letters and digits with both in them, or known prefixes.
    re.compile(r"\b(?=[A-Za-z0-9_\-]*\d)(?=[A-Za-z0-9_\-]*[A-Za-z])[A-Za-z0-9_\-]{24,}\b"),
    re.compile(r"\b(?:sk|pk|ghp|xox[abp])[-_][A-Za-z0-9]{8,}"),
    re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+"),
)


# A date is no secret, though its digits would pass for a code.
_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")


def looks_secret(text: str) -> bool:
    text = _DATE.sub("", text)
    return any(p.search(text) for p in SECRET_PATTERNS)


def bounded(notes: Iterable[Note], max_notes: int, max_chars: int) -> tuple[Note, ...]:
    """The first notes that fit max_notes and max_chars in all, secrets dropped, blanks and repeats too."""
    out: list[Note] = []
    used = 0
    seen: set[str] = set()
    for note in notes:
        text = " ".join(note.text.split())
        key = text.lower()
        if not text or key in seen or looks_secret(text):
            continue
        if len(out) >= max_notes or used + len(text) > max_chars:
            break
        seen.add(key)
        used += len(text)
        out.append(replace(note, text=text))
    return tuple(out)


def day_of(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d")


def for_prompt(notes: Iterable[Note]) -> str:
    """The notes as lines for a prompt, each with its date."""
    return "\n".join(f"- {day_of(n.at)}: {n.text}{' (still open)' if n.open else ''}" for n in notes)
