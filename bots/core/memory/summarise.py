"""Every word of a memory update sent to the model, and how its answer becomes notes."""

from __future__ import annotations

from collections.abc import Sequence

from bots.config import MemoryConfig
from bots.core.memory.notes import Note, bounded
from bots.core.ports import LLMRequest, Turn
from bots.persona import Persona

# The summariser's system prompt starts with this, so a canned client can tell it from a reply.
MARKER = "You keep private notes"
NOTHING = "(nothing)"
OPEN = "[open]"

SYSTEM = (
    MARKER + " for {persona}, an AI persona, about one person, {name}, so that {persona} remembers them "
    "in later conversations anywhere. Rewrite the notes from the notes so far and the new conversation. "
    "Keep facts {name} shared about themselves, the dilemmas and plans they are weighing, and how things "
    "turned out. Write at most {max_notes} notes, {max_chars} characters in all, one per line, each line "
    "starting with '- '. Start a note with '" + OPEN + "' while its dilemma or plan is unresolved; drop "
    "the marker once it is resolved. Paraphrase briefly in your own words; never quote. Never write down "
    "passwords, codes, card or account numbers, addresses, phone numbers, e-mail addresses or anything "
    "else secret, even if {name} said them. If nothing is worth remembering, answer '- " + NOTHING + "'."
)


def summary_request(
    persona: Persona, name: str, notes: Sequence[Note], turns: Sequence[Turn], cfg: MemoryConfig, model: str
) -> LLMRequest:
    system = SYSTEM.format(persona=persona.name, name=name, max_notes=cfg.max_notes, max_chars=cfg.max_chars)
    held = "\n".join(f"- {OPEN + ' ' if n.open else ''}{n.text}" for n in notes) or "- " + NOTHING
    said = "\n".join("> " + f"{_who(t)}: {t.text}".replace("\n", "\n> ") for t in turns)
    user = f"Notes so far:\n{held}\n\nNew conversation:\n{said}"
    return LLMRequest(
        messages=({"role": "system", "content": system}, {"role": "user", "content": user}),
        model=model,
        temperature=0.2,
        max_tokens=cfg.max_tokens,
    )


# How the persona's own turns are marked in the conversation the summariser reads.
YOU = " (you)"


def _who(turn: Turn) -> str:
    return turn.speaker + (YOU if turn.persona_id else "")


def canned_notes(request: LLMRequest) -> str:
    """A summary written without a model (botfleet simulate, dry runs): the person's last lines as notes."""
    said = request.messages[-1]["content"].partition("New conversation:\n")[2]
    lines = [line[2:] for line in said.splitlines() if line.startswith("> ") and YOU + ":" not in line]
    theirs = [line.partition(": ")[2] for line in lines]
    return "\n".join(f"- {text[:80]}" for text in theirs[-3:] if text) or "- " + NOTHING


def parse_notes(
    text: str, prior: Sequence[Note], *, at: float, conversation: str, owner: str, cfg: MemoryConfig
) -> tuple[Note, ...]:
    """The model's lines as notes: bounded, secrets dropped; an unchanged note keeps its date and origin."""
    known = {n.text.lower(): n for n in prior}
    out: list[Note] = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith(("-", "*", "•")):
            continue
        body = line.lstrip("-*• ").strip()
        is_open = body.lower().startswith(OPEN)
        if is_open:
            body = body[len(OPEN) :].strip()
        if not body or body.strip("().").lower() == NOTHING.strip("()"):
            continue
        before = known.get(" ".join(body.split()).lower())
        if before is not None:
            out.append(Note(before.text, before.at, before.conversation, owner, is_open))
        else:
            out.append(Note(body, at, conversation, owner, is_open))
    return bounded(out, cfg.max_notes, cfg.max_chars)
