"""The web room through the core, over real HTTP: the whole App in-process, the real openai SDK
against the fake endpoint, and pages played by an HTTP client with its own cookie (tests/web_world.py)."""

from __future__ import annotations

import asyncio
import io
import os
import sys
from pathlib import Path

import aiohttp
import pytest

from adapters.console import ConsoleAdapter
from adapters.registry import PLATFORMS, config_secrets
from adapters.web import WebAdapter, WebConfig
from adapters.web.hub import Hub
from adapters.web.server import static_bytes
from bots.app import App, SetupError, make_adapters
from bots.config import FleetConfig
from bots.llm.canned import CannedClient
from bots.loading import load_all
from tests.conftest import persona
from tests.fakes.openai_server import FakeOpenAI, Status, Truncated
from tests.fakes.polling import wait_for
from tests.web_world import (
    ADMIN_TOKEN,
    PERSONAS,
    Page,
    WebRoom,
    config_yaml,
    default_reply,
    persona_yaml,
    web_room,
)


@pytest.fixture
async def room(tmp_path: Path):  # type: ignore[no-untyped-def]
    async with web_room(tmp_path) as r:
        yield r


async def test_a_post_gets_three_comments_from_different_followers_streamed_to_open_pages(room: WebRoom) -> None:
    alice, bob = await room.page("alice"), await room.page("bob")
    await bob.listen()
    pid = (await alice.post("/api/post", {"text": "I adopted a cat!"}))["id"]
    await room.settled()
    comments = room.comments(pid)
    assert len(comments) == 3
    assert len({c["author"]["persona"] for c in comments}) == 3
    assert all(c["text"].endswith("thinks that is lovely news.") and c["reply_to"] == pid for c in comments)
    # Bob saw the post and each comment arrive on his open page, with typing while each was written.
    await wait_for(lambda: len([e for e in bob.of("update") if e.get("streaming") is False]) == 3)
    [post] = [e["message"] for e in bob.of("message") if e["message"].get("post")]
    assert post["text"] == "I adopted a cat!" and post["author"]["name"] == "alice"
    typing = bob.of("typing")
    assert {e["persona"] for e in typing if e["on"]} == {c["author"]["persona"] for c in comments}
    assert [e["on"] for e in typing].count(False) == 3


async def test_a_reply_to_a_comment_is_answered_by_that_persona_in_the_posts_thread(room: WebRoom) -> None:
    alice = await room.page()
    pid = (await alice.post("/api/post", {"text": "I adopted a cat!"}))["id"]
    await room.settled()
    comment = room.comments(pid)[0]
    thread = room.web.thread_of(pid)
    mid = (await alice.post("/api/say", {"channel": thread, "text": "why so?", "reply_to": comment["id"]}))["id"]
    await room.settled()
    answers = [c for c in room.comments(pid) if c["reply_to"] == mid]
    assert [a["author"]["persona"] for a in answers] == [comment["author"]["persona"]]


async def test_more_brings_a_follower_who_has_not_spoken_and_followers_are_chosen_per_person(room: WebRoom) -> None:
    alice, bob = await room.page("alice"), await room.page("bob")
    await bob.listen()
    pid = (await alice.post("/api/post", {"text": "I adopted a cat!"}))["id"]
    await room.settled()
    spoken = {c["author"]["persona"] for c in room.comments(pid)}
    await alice.post("/api/command", {"command": "more", "channel": room.web.thread_of(pid)})
    await room.settled()
    assert {c["author"]["persona"] for c in room.comments(pid)} == set(PERSONAS)
    assert len(spoken) == 3

    chosen = ["skeptic", "nerd", "realist"]
    assert sorted((await alice.get("/api/followers"))["followers"]) == sorted(PERSONAS)
    await alice.post("/api/command", {"command": "followers", "channel": "feed", "args": chosen})
    assert (await alice.get("/api/followers"))["followers"] == chosen
    assert sorted((await bob.get("/api/followers"))["followers"]) == sorted(PERSONAS)
    pid2 = (await alice.post("/api/post", {"text": "Second post"}))["id"]
    await room.settled()
    assert {c["author"]["persona"] for c in room.comments(pid2)} == set(chosen)
    # The confirmation was Alice's alone.
    assert not any("comments from" in e["text"] for e in bob.of("notice"))


async def test_rooms_take_mentions_replies_and_commands_like_discord(room: WebRoom) -> None:
    alice = await room.page()
    await alice.listen()
    mid = (await alice.post("/api/say", {"channel": "general", "text": "what do you say @skeptic?"}))["id"]
    await room.settled()
    msgs = (await alice.get("/api/room?channel=general"))["messages"]
    [answer] = [m for m in msgs if m["author"]["ai"]]
    assert answer["author"]["persona"] == "skeptic" and answer["reply_to"] == mid
    # A reply to the persona's message is answered by it, with no mention.
    await alice.post("/api/say", {"channel": "general", "text": "go on", "reply_to": answer["id"]})
    await room.settled()
    msgs = (await alice.get("/api/room?channel=general"))["messages"]
    assert [m["author"]["persona"] for m in msgs if m["author"]["ai"]] == ["skeptic", "skeptic"]
    await alice.post("/api/say", {"channel": "general", "text": "/ask nerd is a cat a good idea?"})
    await room.settled()
    msgs = (await alice.get("/api/room?channel=general"))["messages"]
    assert [m["author"]["persona"] for m in msgs if m["author"]["ai"]][-1] == "nerd"
    # /about answers in the channel (as on Discord); /optout answers the person alone.
    await alice.post("/api/say", {"channel": "random", "text": "/about"})
    await wait_for(lambda: any("AI personas" in e["message"]["text"] for e in alice.of("message")))
    assert [m["author"]["name"] for m in (await alice.get("/api/room?channel=random"))["messages"]] == ["botfleet"]
    await alice.post("/api/say", {"channel": "random", "text": "/optout"})
    await wait_for(lambda: any("will not answer" in e["text"] for e in alice.of("notice")))


async def test_an_opted_out_person_gets_no_comments_and_forget_clears_their_words(room: WebRoom) -> None:
    alice = await room.page()
    await alice.post("/api/command", {"command": "optout", "channel": "feed"})
    pid = (await alice.post("/api/post", {"text": "I adopted a cat!"}))["id"]
    await room.settled()
    assert room.comments(pid) == []
    # Per person: Bob, in the same room, still gets his comments.
    bob = await room.page("bob")
    bobs = (await bob.post("/api/post", {"text": "I adopted a dog!"}))["id"]
    await room.settled()
    assert len(room.comments(bobs)) == 3
    await alice.post("/api/command", {"command": "forget", "channel": "feed"})
    await room.settled()
    assert [p["id"] for p in (await alice.get("/api/feed"))["posts"]] == [bobs]


async def test_posts_without_the_csrf_token_or_from_another_site_are_refused(room: WebRoom) -> None:
    alice = await room.page()
    await alice.post("/api/post", {"text": "x"}, expect=403, **{"X-Botfleet-CSRF": "wrong"})
    await alice.post("/api/post", {"text": "x"}, expect=403, Origin="http://evil.example")
    async with aiohttp.ClientSession() as stranger:
        async with stranger.post(room.base + "/api/post", json={"text": "x"}) as r:
            assert r.status == 403
    await alice.post("/api/say", {"channel": "nowhere", "text": "hi"}, expect=400)
    await alice.post("/api/post", {"text": "   "}, expect=400)
    assert (await alice.get("/api/feed"))["posts"] == []


async def test_pages_carry_a_strict_policy_and_no_inline_script(room: WebRoom) -> None:
    async with aiohttp.ClientSession() as http:
        for path in ("/", "/rooms", "/operator"):
            async with http.get(room.base + path) as r:
                html = await r.text()
                csp = r.headers["Content-Security-Policy"]
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "style-src 'self'" in csp
            assert "<script>" not in html and " style=" not in html and "http" not in html.split("</head>")[1]
        async with http.get(room.base + "/static/../config.yaml") as r:
            assert r.status == 404
    for script in ("common.js", "feed.js", "rooms.js", "operator.js"):
        code = (static_bytes(script) or b"").decode()
        assert code and "innerHTML" not in code and "insertAdjacentHTML" not in code


async def test_the_operator_sees_decisions_only_with_the_token(room: WebRoom) -> None:
    alice = await room.page()
    async with alice.http.get(room.base + "/api/operator/state") as r:
        assert r.status == 401
    assert await alice.post("/api/operator/login", {"token": "guess"}, expect=403) == "wrong token"
    await alice.post("/api/operator/login", {"token": ADMIN_TOKEN})
    pid = (await alice.post("/api/post", {"text": "I adopted a cat!"}))["id"]
    await room.settled()
    state = await alice.get("/api/operator/state")
    [decision] = [d for d in state["decisions"] if d["id"] == pid]
    assert decision["trigger"] == "post" and len(decision["decisions"]) == 4
    assert sorted(d["action"] for d in decision["decisions"]).count("reply") == 3
    assert {p["id"] for p in state["personas"]} == set(PERSONAS)
    assert sum(p["tokens_today"] for p in state["personas"]) > 0
    assert state["samples"][-1]["messages"] >= 1 and state["samples"][-1]["replies"] == 3
    # The cookie holds a mark derived from the token, never the token.
    assert all(ADMIN_TOKEN not in c.value for c in alice.http.cookie_jar)


async def test_check_and_reload_report_a_broken_persona_file_by_line(room: WebRoom) -> None:
    alice = await room.page()
    await alice.post("/api/operator/login", {"token": ADMIN_TOKEN})
    broken = room.home / "personas" / "nerd.yaml"
    broken.write_text("id: nerd\nname: The Nerd\nprompt: You are nerd.\nlimits:\n  per_minute: lots\n")
    for action in ("check", "reload"):
        result = await alice.post(f"/api/operator/{action}", {})
        assert not result["ok"]
        assert any(p.startswith(f"{broken}:5: limits.per_minute:") for p in result["problems"]), result
    assert len(room.app.fleet.personas) == len(PERSONAS)


async def test_without_an_admin_token_there_is_no_operator_page(tmp_path: Path) -> None:
    async with web_room(tmp_path, admin_token="") as room:
        alice = await room.page()
        assert (await alice.get("/api/session"))["operator"] == {"enabled": False, "signed_in": False}
        async with alice.http.get(room.base + "/api/operator/state") as r:
            assert r.status == 404


def test_a_terminal_run_without_tokens_opens_the_web_room_beside_the_console() -> None:
    cfg, personas = FleetConfig(), [persona("skeptic")]
    assert [a.platform for a in make_adapters(cfg, personas, terminal=True)] == ["console", "web"]
    assert [a.platform for a in make_adapters(cfg, personas, terminal=False)] == ["console"]
    assert [a.platform for a in make_adapters(cfg, personas, ["web"])] == ["web"]


def test_the_web_room_has_a_feed_and_its_token_is_a_secret_without_any_config(tmp_path: Path) -> None:
    (tmp_path / "personas").mkdir()
    (tmp_path / "personas" / "a.yaml").write_text("id: a\nname: A\nprompt: p\n")
    config = tmp_path / "config.yaml"
    config.write_text("personas_dir: personas\nadapters:\n  web: {admin_token: s3cret-op}\n")
    cfg, _ = load_all(config)
    assert cfg.feeds.find("web", ("feed",)) is not None
    assert "s3cret-op" in config_secrets(cfg)
    assert PLATFORMS["web"].settings(cfg).port == 8080


async def test_a_reload_with_no_web_section_in_the_config_keeps_the_room_running(tmp_path: Path) -> None:
    async with web_room(tmp_path) as room:
        config = room.home / "config.yaml"
        config.write_text("personas_dir: personas\npid_file: null\n")
        assert await room.app.ops.reload() == []
        alice = await room.page()
        await alice.post("/api/say", {"channel": "general", "text": "still here @nerd?"})
        await room.settled()
        assert any(m["author"]["ai"] for m in (await alice.get("/api/room?channel=general"))["messages"])


async def test_only_the_signed_in_operator_may_mute_a_persona_in_a_room(room: WebRoom) -> None:
    alice, op = await room.page("alice"), await room.page("operator")
    await alice.listen()
    await alice.post("/api/say", {"channel": "general", "text": "/mute skeptic"})
    await wait_for(lambda: any("Only admins" in e["text"] for e in alice.of("notice")))
    await op.post("/api/operator/login", {"token": ADMIN_TOKEN})
    await op.post("/api/say", {"channel": "general", "text": "/mute skeptic"})
    await room.settled()
    await alice.post("/api/say", {"channel": "general", "text": "hello @skeptic"})
    await room.settled()
    msgs = (await alice.get("/api/room?channel=general"))["messages"]
    assert not any(m["author"]["persona"] == "skeptic" for m in msgs)


async def test_end_of_console_input_ends_a_run_with_the_web_room_beside_it(tmp_path: Path) -> None:
    cfg = FleetConfig.model_validate({"pid_file": None, "fleet": {"reply_delay_seconds": [0, 0]}})
    out = io.StringIO()
    console = ConsoleAdapter(stdin=io.StringIO("hi @skeptic\n"), stdout=out)
    web = WebAdapter(WebConfig(port=0))
    app = App(cfg, [persona("skeptic")], llm=CannedClient("meow"), adapters=[console, web], signals=False)
    await app.start()
    assert web.url
    await asyncio.wait_for(app.run(), 10)
    assert "[Skeptic] meow" in out.getvalue()
    assert not web.url  # stopped with the run


def test_the_backlog_drops_an_old_post_with_its_thread() -> None:
    hub = Hub(backlog=2)
    for n in range(3):
        hub.add({"id": f"p{n}", "channel": f"feed-p{n}", "author": {}, "post": True}, listed_in="feed")
        hub.add({"id": f"c{n}", "channel": f"feed-p{n}", "author": {}})
    assert [p["id"] for p in hub.posts("feed")] == ["p1", "p2"]
    assert hub.message("p0") is None and hub.message("c0") is None and hub.messages("feed-p0") == []
    assert [m["id"] for m in hub.posts("feed")[0]["thread"]] == ["c1"]


async def test_a_reply_streams_to_the_page_as_it_is_written(tmp_path: Path) -> None:
    async with web_room(tmp_path, chunk_seconds=0.15) as room:
        alice = await room.page()
        await alice.listen()
        await alice.post("/api/say", {"channel": "general", "text": "hi @nerd"})
        await room.settled()
        await wait_for(lambda: any(e.get("streaming") is False for e in alice.of("update")))
        [shown] = [e["message"] for e in alice.of("message") if e["message"]["author"]["ai"]]
        texts = [shown["text"]] + [e["text"] for e in alice.of("update") if "text" in e]
        # Growing snapshots of one message, ending in the whole reply.
        assert len(set(texts)) >= 2 and texts[-1] == "nerd thinks that is lovely news."
        assert all(texts[-1].startswith(t) for t in texts)


async def test_a_taken_port_is_a_clear_setup_error_and_leaves_nothing_running(room: WebRoom) -> None:
    cfg = FleetConfig.model_validate({"pid_file": None})
    web = WebAdapter(WebConfig(port=room.web.port))
    app = App(cfg, [persona("skeptic")], llm=CannedClient("x"), adapters=[web], signals=False)
    with pytest.raises(SetupError, match=f"web room: cannot listen on 127.0.0.1:{room.web.port}"):
        await app.start()
    assert not app.fleet.accepting
    # The room already on that port is untouched.
    assert (await (await room.page()).get("/api/session"))["feed"] == "feed"


async def test_a_persona_reaction_is_a_like_on_the_message_for_every_page(room: WebRoom) -> None:
    alice, bob = await room.page("alice"), await room.page("bob")
    await bob.listen()
    mid = (await alice.post("/api/say", {"channel": "general", "text": "look at my kitten"}))["id"]
    await room.settled()
    await wait_for(lambda: bob.of("react"))
    assert bob.of("react") == [{"type": "react", "id": mid, "emoji": "❤️", "by": "The Supporter"}]
    [shown] = [m for m in (await alice.get("/api/room?channel=general"))["messages"] if m["id"] == mid]
    assert shown["reactions"] == [{"emoji": "❤️", "by": "The Supporter"}]


async def test_a_reply_the_model_cuts_off_is_marked_and_a_failed_one_leaves_no_trace(room: WebRoom) -> None:
    alice = await room.page()
    await alice.listen()
    room.fake.script(Truncated())
    await alice.post("/api/say", {"channel": "general", "text": "hi @nerd"})
    await room.settled()
    room.fake.fallback = Status.server_error()
    await alice.post("/api/say", {"channel": "random", "text": "hi @nerd"})
    await room.settled()
    general = (await alice.get("/api/room?channel=general"))["messages"]
    [cut] = [m for m in general if m["author"]["ai"]]
    # What was shown stays, marked as cut off (the page adds "[cut off]").
    assert cut["cut"] and not cut["streaming"] and "nerd thinks that is lovely news.".startswith(cut["text"])
    random_room = (await alice.get("/api/room?channel=random"))["messages"]
    assert [m["author"]["name"] for m in random_room] == ["alice"]
    # Whatever happened, nobody is left "writing".
    await wait_for(lambda: len(alice.of("typing")) == 4)
    assert [e["on"] for e in alice.of("typing")] == [True, False, True, False]


def test_a_page_gets_each_event_as_it_was_when_it_happened() -> None:
    hub = Hub()
    page = hub.open("bob")
    hub.add({"id": "m1", "channel": "general", "author": {}, "reactions": []})
    hub.react("m1", "👍", "The Nerd")
    first = page.queue.get_nowait()
    # The message event shows no like: the like is its own event, so the page counts it once.
    assert first is not None and b'"reactions": []' in first
    assert b'"type": "react"' in (page.queue.get_nowait() or b"")


async def test_botfleet_run_adapter_web_prints_the_address_and_serves_the_feed(tmp_path: Path) -> None:
    (tmp_path / "personas").mkdir()
    for pid in PERSONAS:
        (tmp_path / "personas" / f"{pid}.yaml").write_text(persona_yaml(pid))
    (tmp_path / "config.yaml").write_text(config_yaml(ADMIN_TOKEN))
    async with FakeOpenAI(reply=default_reply) as fake:
        env = {**os.environ, "OPENAI_BASE_URL": fake.base_url, "OPENAI_API_KEY": "test-key"}
        env.pop("REDIS_URL", None)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bots", "run", "--adapter", "web", "--config", str(tmp_path / "config.yaml"),
            cwd=tmp_path, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            assert proc.stderr is not None
            said = b""
            while b"web room at " not in said:
                said = await asyncio.wait_for(proc.stderr.readline(), 30)
                assert said, "botfleet exited without printing the web room's address"
            url = said.decode().split("web room at ", 1)[1].strip().rstrip("/")
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
                page = await Page(url, http).open("newcomer")
                await page.post("/api/post", {"text": "I adopted a cat!"})

                async def comments() -> int:
                    thread = (await page.get("/api/feed"))["posts"][0]["thread"]
                    return len([m for m in thread if m["author"]["ai"] and not m.get("streaming")])

                for _ in range(300):
                    if await comments() == 3:
                        break
                    await asyncio.sleep(0.05)
                assert await comments() == 3
        finally:
            proc.terminate()
            assert await asyncio.wait_for(proc.wait(), 20) == 0
