"""A card's `mes_example` into persona examples: blocks start at `<START>`; lines opening with
`{{user}}:` or `{{char}}:` (or the character's name, or the old `<USER>:`/`<BOT>:`) start a turn and
the lines after them continue it."""

from __future__ import annotations

import re

MAX_EXAMPLES = 10  # every example goes into every prompt: a long card must not make each reply costly

_START = re.compile(r"<START>", re.IGNORECASE)


def parse_examples(text: str, *names: str) -> tuple[list[tuple[str, str]], list[str]]:
    """(user, reply) pairs with macros still in them, and notes on what was left out. names: what the
    character is called besides {{char}} (its name, a nickname)."""
    called = "".join("|" + re.escape(n.strip()) for n in names if n.strip())
    speaker = re.compile(r"^\s*(\{\{user\}\}|<user>|\{\{char\}\}|<bot>" + called + r")\s*:[ \t]?(.*)$", re.IGNORECASE)
    pairs: list[tuple[str, str]] = []
    notes: list[str] = []
    for n, block in enumerate(_START.split(text.replace("\r\n", "\n"))):
        turns: list[list[str]] = []  # [who, text]
        for line in block.split("\n"):
            m = speaker.match(line)
            if m:
                who = "user" if m.group(1).lower() in ("{{user}}", "<user>") else "char"
                turns.append([who, m.group(2)])
            elif turns:
                turns[-1][1] += "\n" + line
            elif line.strip():
                notes.append(f"mes_example block {n}: text before the first speaker line skipped")
        merged: list[list[str]] = []
        for who, said in turns:
            if not said.strip():
                continue
            if merged and merged[-1][0] == who:  # two lines in a row by one speaker are one message
                merged[-1][1] += "\n" + said.strip()
            else:
                merged.append([who, said.strip()])
        turns = merged
        i = 0
        while i < len(turns):
            if turns[i][0] == "user" and i + 1 < len(turns) and turns[i + 1][0] == "char":
                pairs.append((turns[i][1], turns[i + 1][1]))
                i += 2
                continue
            what = "a reply with no message before it" if turns[i][0] == "char" else "a message with no reply"
            notes.append(f"mes_example block {n}: {what} skipped")
            i += 1
    if len(pairs) > MAX_EXAMPLES:
        notes.append(f"mes_example: kept the first {MAX_EXAMPLES} of {len(pairs)} examples (each costs tokens)")
        pairs = pairs[:MAX_EXAMPLES]
    return pairs, notes
