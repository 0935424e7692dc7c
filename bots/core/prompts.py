"""Every word the fleet sends to the model: the ground rules, how a conversation becomes chat
messages, and the instructions of feed comments, /ask and /panel."""

from __future__ import annotations

import re
from collections.abc import Sequence

from bots.core.ports import Turn
from bots.persona import Persona

_NAME_OK = re.compile(r"[^a-zA-Z0-9_-]")

GROUND_RULES = (
    "You are {name}, an AI persona in a group chat with people and other AI personas. "
    "Stay in character. Answer in plain text, briefly (2-4 sentences unless asked for more). "
    "Do not prefix your reply with your name. Never claim to be human; if asked, say you are an AI persona. "
    "Do not @mention anyone."
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


def ask_instruction(author: str, question: str) -> str:
    return f"{author} asked you directly: {question!r}. Answer them."


def panel_instruction(author: str, question: str, others: Sequence[Persona]) -> str:
    angles = "; ".join(f"{o.name} ({o.bio.strip() or 'another outlook'})" for o in others)
    return (
        f"{author} asked a panel of AI personas: {question!r}. "
        f"The others on the panel: {angles}. Answer from your own outlook; do not repeat points "
        "already made above, add the angle only you would take."
    )


def _speaker_name(name: str) -> str:
    # The API rejects message names outside ^[a-zA-Z0-9_-]{1,64}$, so names go in the text instead.
    return _NAME_OK.sub("_", name)[:64] or "user"


def build_messages(
    persona: Persona,
    history: Sequence[Turn],
    *,
    instruction: str = "",
    budget_chars: int = 4000,
) -> list[dict[str, str]]:
    system = persona.prompt.strip() + "\n\n" + GROUND_RULES.format(name=persona.name)
    if persona.sponsor:
        system += f" You speak for {persona.sponsor}; say so when relevant."
    if instruction:
        system += "\n\n" + instruction.strip()
    messages: list[dict[str, str]] = [{"role": "system", "content": system}]
    for ex in persona.examples:
        messages.append({"role": "user", "content": ex.user})
        messages.append({"role": "assistant", "content": ex.reply})
    # Newest turns first until the budget is spent, then back into chronological order.
    kept: list[dict[str, str]] = []
    used = 0
    for turn in reversed(history):
        if turn.persona_id == persona.id:
            msg = {"role": "assistant", "content": turn.text}
        else:
            msg = {"role": "user", "content": f"{turn.speaker}: {turn.text}"}
        if kept and used + len(msg["content"]) > budget_chars:
            break
        used += len(msg["content"])
        kept.append(msg)
    kept.reverse()
    messages.extend(kept)
    if messages[-1]["role"] != "user":
        # Chat templates expect the model to answer a user turn.
        messages.append({"role": "user", "content": "(Continue the conversation in your own voice.)"})
    return messages
