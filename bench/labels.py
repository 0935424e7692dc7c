"""How often the local model opens its reply with a speaker label ("The Stoic: ..."), with the old
history format (each other speaker a "Name: text" user turn) and the fleet's format now (others
quoted as "> name: text" inside one user message, the message to answer marked; bots/core/prompts.py).

Counts the RAW model output: the model's own text with the client's stop strings, before the
client's label trimming and before delivery's unlabel. Prints one JSON line per format:
{"format": "legacy"|"quoted", "replies": 20, "labelled": k, "examples": [...]}
Run: python bench/labels.py [--model PATH] [--seed 1]
Needs the local extra.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dilemmas import ANSWERING, DILEMMAS, conversation

from bots.core.ports import LLMRequest, Turn
from bots.core.prompts import CONTINUE, build_messages, system_prompt
from bots.llm.local import LocalClient
from bots.persona import Persona, load_personas

ROOT = Path(__file__).resolve().parent.parent
# A label: optional quote mark or bold, then 1-40 characters without a colon, then a colon.
LABEL = re.compile(r"^\s*(?:>\s*)?(?:\*\*)?\[?([^:\[\]\n]{1,40}?)\]?(?:\*\*)?:\s")
# Label-like: up to three capitalised words ("The Stoic", "Alice", "Dee"), or a known speaker.
NAMEISH = re.compile(r"^(?:The )?[A-Z][\w'-]*(?: [A-Z][\w'-]*){0,2}$")


def starts_with_label(text: str, names: frozenset[str]) -> bool:
    m = LABEL.match(text)
    if m is None:
        return False
    label = m.group(1).strip()
    return label.lower() in names or label.lower().removeprefix("the ") in names or bool(NAMEISH.match(label))


def legacy_messages(persona: Persona, history: Sequence[Turn]) -> list[dict[str, str]]:
    """The history format before issue 12.8: each other speaker a "Name: text" user turn."""
    messages = [{"role": "system", "content": system_prompt(persona)}]
    for ex in persona.examples:
        messages += [{"role": "user", "content": ex.user}, {"role": "assistant", "content": ex.reply}]
    for turn in history:
        if turn.persona_id == persona.id:
            messages.append({"role": "assistant", "content": turn.text})
        else:
            messages.append({"role": "user", "content": f"{turn.speaker}: {turn.text}"})
    if messages[-1]["role"] != "user":
        messages.append({"role": "user", "content": CONTINUE})
    return messages


def raw_reply(client: LocalClient, request: LLMRequest) -> str:
    """The model's text for request, with the client's payload (stop strings, sampling) and nothing
    trimmed afterwards."""
    parts: list[str] = []

    def on_part(part: dict[str, object]) -> bool:
        for choice in part.get("choices") or []:  # type: ignore[attr-defined]
            parts.append((choice.get("delta") or {}).get("content") or "")
        return False

    client._load().handle_chat_completions(client._payload(request), on_part)
    return "".join(parts)


def run(model: Path | None, seed: int) -> list[dict[str, Any]]:
    personas = {p.id: p for p in load_personas(ROOT / "personas")}
    names = frozenset(n for p in personas.values() for n in (p.name.lower(), p.name.lower().removeprefix("the "))) | {
        "alice",
        "bob",
        "carol_92",
        "dee",
    }
    client = LocalClient(model, n_ctx=2048, seed=seed)
    results: list[dict[str, Any]] = []
    for fmt in ("legacy", "quoted"):
        labelled: list[str] = []
        for i in range(len(DILEMMAS)):
            persona = personas[ANSWERING[i % len(ANSWERING)]]
            history = conversation(i, persona.name)
            messages = legacy_messages(persona, history) if fmt == "legacy" else build_messages(persona, history)
            request = LLMRequest(
                messages=tuple(messages),
                model="local",
                temperature=persona.model.temperature if persona.model.temperature is not None else 0.8,
                max_tokens=persona.model.max_tokens or 300,
            )
            text = raw_reply(client, request)
            if starts_with_label(text, names):
                labelled.append(text[:80])
        results.append({"format": fmt, "replies": len(DILEMMAS), "labelled": len(labelled), "examples": labelled[:5]})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a GGUF file (default: the shipped model)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    for line in run(args.model, args.seed):
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
