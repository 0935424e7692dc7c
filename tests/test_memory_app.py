"""Relationship memory in a running App: the console room, the real openai client against the fake
endpoint; the update runs in the background on the ops loop's pace."""

from __future__ import annotations

import io

from adapters.console import ConsoleAdapter
from bots.app import App, make_llm
from tests.conftest import persona
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.polling import wait_for
from tests.test_app import Pipe, config, lines, pipe, reader_gone
from tests.test_memory import replies_of, summaries_of, summariser_or_persona

__all__ = ["pipe"]


async def test_a_running_app_remembers_in_the_background(pipe: Pipe) -> None:
    out = io.StringIO()
    async with FakeOpenAI(reply=summariser_or_persona) as fake:
        cfg = config(
            llm={"provider": "openai", "model": "fake-gpt", "timeout_seconds": 5},
            memory={"quiet_seconds": 0.3},
        )
        llm = make_llm(cfg, {"OPENAI_BASE_URL": fake.base_url, "OPENAI_API_KEY": "k"})
        adapters = [ConsoleAdapter(pipe.reader, out)]
        app = App(cfg, [persona("skeptic")], llm=llm, adapters=adapters, signals=False, usage_sync_seconds=0.05)
        await app.start()
        try:
            pipe.say("@skeptic I'm thinking of opening a bakery")
            await wait_for(lambda: "[Skeptic] Have you costed the ovens?" in lines(out), within=10)
            await wait_for(lambda: bool(summaries_of(fake)), within=10)
            pipe.say("@skeptic so?")
            # The second reply (another update may follow it once the talk is quiet again).
            await wait_for(lambda: len(replies_of(fake)) == 2, within=10)
            assert "open a bakery" in replies_of(fake)[-1]["messages"][0]["content"]
        finally:
            await app.stop()
            await reader_gone(pipe)
