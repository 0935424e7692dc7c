"""Every word the fleet sends to the model: the ground rules, how a conversation becomes chat
messages, and the instructions of feed comments, /ask and /panel."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

from bots.core.ports import Turn
from bots.core.safety.rules import HUMAN_RULES, PROFESSIONAL_RULES, SPONSOR_RULES, professional
from bots.persona import Persona

_NAME_OK = re.compile(r"[^a-zA-Z0-9_-]")

GROUND_RULES = (
    "You are {name}, an AI persona in a group chat with people and other AI personas. "
    "Stay in character. Answer in plain text, briefly (2-4 sentences unless asked for more). "
    "Do not prefix your reply with your name. Never claim to be human; if asked, say you are an AI persona. "
    "Do not @mention anyone. " + HUMAN_RULES
)

COMMENT = (
    "{author} just posted this to a feed where AI personas follow people and comment on their posts, "
    "the way followers do on a social app. Write one short comment (1-3 sentences) from your own outlook. "
    "Comments other followers already made are above: take a different angle, do not repeat them."
)
MORE_COMMENT = (
    "{author} asked for more perspectives on their post. Comments already made are above: add an angle "
    "nobody has taken yet, in 1-3 sentences."
)


# Told to a persona whose model cannot see when a photo is in the conversation.
CANNOT_SEE_RULE = (
    "Messages may mention photos you cannot see. Never describe or pretend to have seen them; "
    "if it matters, say honestly that you cannot see images and respond to what was said about them."
)


def ask_instruction(author: str, question: str) -> str:
    return f"{author} asked you directly: {question!r}. Answer them."


def panel_instruction(author: str, question: str, others: Sequence[Persona]) -> str:
    angles = "; ".join(f"{o.name} ({o.bio.strip() or 'another outlook'})" for o in others)
    return (
        f"{author} asked a panel of AI personas: {question!r}. "
        f"The others on the panel: {angles}. Answer from your own outlook; do not repeat points "
        "already made above, add the angle only you would take."
    )


# Other speakers' words reach the model quoted inside a user message, never as "Name: text" user
# turns of their own: small models copy that shape and start their replies with someone's name.
EARLIER = "Earlier in the chat (for context):"
SINCE = "Said since then (for context only):"
ANSWER = "Answer this message:"
CONTINUE = "(Continue the conversation in your own voice.)"
# Below this many characters left, a context turn would be a stub: stop adding them.
_MIN_CONTEXT = 40


def _speaker_name(name: str) -> str:
    # The API rejects message names outside ^[a-zA-Z0-9_-]{1,64}$, so names go in the text instead.
    return _NAME_OK.sub("_", name)[:64] or "user"


def cap(text: str, limit: int) -> str:
    """text cut to at most limit characters, marked as cut."""
    if len(text) <= limit:
        return text
    return text[: max(limit - 1, 0)] + "…"


def _quote(turn: Turn) -> str:
    return "> " + f"{turn.speaker}: {turn.text}".replace("\n", "\n> ")


def system_prompt(persona: Persona, instruction: str = "", memory: str = "") -> str:
    system = persona.prompt.strip() + "\n\n" + GROUND_RULES.format(name=persona.name)
    if persona.sponsor:
        system += f" You speak for {persona.sponsor}; say so when relevant. {SPONSOR_RULES}"
    if professional(persona):
        system += " " + PROFESSIONAL_RULES
    if memory:
        # The persona's notes about the person it answers (bots.core.memory), whatever the channel.
        system += "\n\n" + memory.strip()
    if instruction:
        system += "\n\n" + instruction.strip()
    return system


def _target(persona: Persona, history: Sequence[Turn], answering: str | None) -> int | None:
    """Where in history the message being answered is: the one with that id, else the newest turn
    if someone else wrote it."""
    if answering:
        for i in range(len(history) - 1, -1, -1):
            if history[i].message_id == answering and history[i].persona_id != persona.id:
                return i
    if history and history[-1].persona_id != persona.id:
        return len(history) - 1
    return None


def _fit(turns: Sequence[Turn], budget: int) -> list[Turn | None]:
    """turns, in order of priority, each capped to what is left of the budget (None: left out)."""
    out: list[Turn | None] = []
    for turn in turns:
        if budget < _MIN_CONTEXT:
            out.append(None)
            continue
        text = cap(turn.text, budget)
        budget -= len(text)
        out.append(replace(turn, text=text))
    return out


def _arrange(
    persona: Persona, history: Sequence[Turn], answering: str | None, budget: int
) -> tuple[list[Turn], list[Turn], Turn | None]:
    """(context before the answered turn, turns said after it, the answered turn), within budget."""
    t = _target(persona, history, answering)
    if t is None:
        fitted = _fit(history[::-1], budget)[::-1]
        return [x for x in fitted if x is not None], [], None
    target = replace(history[t], text=cap(history[t].text, budget))
    before, after = history[:t], history[t + 1 :]
    # The turns just before the answered one matter most, then what was said after it.
    fitted = _fit([*before[::-1], *after], budget - len(target.text))
    kept_before = [x for x in fitted[: len(before)][::-1] if x is not None]
    kept_after = [x for x in fitted[len(before) :] if x is not None]
    return kept_before, kept_after, target


def _context(persona: Persona, turns: Sequence[Turn]) -> list[dict[str, str]]:
    """Turns in order: the persona's own as its assistant messages, runs of others' quoted in one
    user message each."""
    out: list[dict[str, str]] = []
    for turn in turns:
        if turn.persona_id == persona.id:
            out.append({"role": "assistant", "content": turn.text})
        elif out and out[-1]["role"] == "user":
            out[-1]["content"] += "\n" + _quote(turn)
        else:
            out.append({"role": "user", "content": EARLIER + "\n" + _quote(turn)})
    return out


def _since(turns: Sequence[Turn]) -> str:
    if not turns:
        return ""
    return SINCE + "\n" + "\n".join(_quote(t) for t in turns)


def build_messages(
    persona: Persona,
    history: Sequence[Turn],
    *,
    instruction: str = "",
    budget_chars: int = 4000,
    answering: str | None = None,
    memory: str = "",
) -> list[dict[str, str]]:
    """The chat messages for one reply. `answering` is the id of the message the reply answers: it is
    the last user message, marked as the one to answer, whatever was said after it (that comes
    before it, as context). Every turn's text counts against budget_chars, that one's included."""
    messages: list[dict[str, str]] = [{"role": "system", "content": system_prompt(persona, instruction, memory)}]
    for ex in persona.examples:
        messages.append({"role": "user", "content": ex.user})
        messages.append({"role": "assistant", "content": ex.reply})
    before, after, target = _arrange(persona, history, answering, budget_chars)
    messages.extend(_context(persona, before))
    answer = ANSWER + "\n" + _quote(target) if target is not None else ""
    final = "\n\n".join(part for part in (_since(after), answer) if part)
    if final:
        messages.append({"role": "user", "content": final})
    elif messages[-1]["role"] != "user":
        # Chat templates expect the model to answer a user turn.
        messages.append({"role": "user", "content": CONTINUE})
    return messages
