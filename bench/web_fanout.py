"""How the web room carries replies to many open pages: N pages hold the live stream (server-sent
events), one person posts M messages that each get a persona's reply, and we time until every page
has seen every reply finished. The reply is canned (no model), so this is the room's own cost:
HTTP, the hub's fan-out and JSON, on this machine's event loop.

    .venv/bin/python bench/web_fanout.py [pages] [messages]
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.web import WebAdapter, WebConfig
from bots.app import App
from bots.config import FleetConfig
from bots.llm.canned import CannedClient
from bots.persona import Persona

REPLY = "A canned reply of about the length of a real one: two sentences, a question, and a bit more. " * 3


async def reader(base: str, ready: asyncio.Event, want: int, seen: list[float]) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        await (await http.get(base + "/api/session")).json()
        async with http.get(base + "/api/stream", timeout=aiohttp.ClientTimeout(total=None)) as r:
            # Headers arrive after the hub registered this stream: from here on it gets every event.
            ready.set()
            finished = 0
            async for line in r.content:
                if line.startswith(b"data: "):
                    event = json.loads(line[6:])
                    if event["type"] == "update" and event.get("streaming") is False:
                        finished += 1
                        if finished == want:
                            seen.append(time.perf_counter())
                            return


async def main(pages: int, messages: int) -> None:
    rules = {"reply_delay_seconds": [0, 0], "channel_per_minute": 10_000}
    cfg = FleetConfig.model_validate({"pid_file": None, "about": {"disclosure": ""}, "fleet": rules})
    nerd = Persona.model_validate({"id": "nerd", "name": "The Nerd", "prompt": "p", "triggers": [{"mention": True}]})
    web = WebAdapter(WebConfig(port=0))
    app = App(cfg, [nerd], llm=CannedClient(REPLY), adapters=[web], signals=False)
    await app.start()
    base = web.url.rstrip("/")
    seen: list[float] = []
    readies = [asyncio.Event() for _ in range(pages)]
    readers = [asyncio.create_task(reader(base, readies[i], messages, seen)) for i in range(pages)]
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 60)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        head = {"X-Botfleet-CSRF": (await (await http.get(base + "/api/session")).json())["csrf"]}
        await http.post(base + "/api/name", json={"name": "bench"}, headers=head)
        start = time.perf_counter()
        for n in range(messages):
            r = await http.post(base + "/api/say", json={"channel": "general", "text": f"#{n} hi @nerd"}, headers=head)
            assert r.status == 200, await r.text()
        await asyncio.wait_for(asyncio.gather(*readers), 300)
    took = [t - start for t in seen]
    # Per reply a page gets at least: the person's message, the reply, its final update, typing on and off.
    events = pages * messages * 5
    print(f"pages={pages} messages={messages} (each answered by one persona)")
    print(f"every page saw every reply finished after {max(took):.2f} s (median page {statistics.median(took):.2f} s)")
    print(f"~{events / max(took):.0f} page events/s delivered")
    await app.stop()


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    asyncio.run(main(*(args + [100, 50][len(args) :])))
