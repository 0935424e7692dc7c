"""Telegram end to end: the real Fleet and real PTB bots against the fake Bot API, the real openai SDK
against the fake endpoint (the world is in tests/telegram_world.py). Nothing of ours is replaced."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from bots import cli
from tests.fakes.openai_server import Truncated
from tests.telegram_world import BAD_TOKEN, TOKENS, telegram_fleet


async def test_bots_that_cannot_see_each_other_converse_up_to_max_bot_chain(tmp_path: Path) -> None:
    async with telegram_fleet(tmp_path, max_bot_chain=2) as w:
        w.voices.lines.update(skeptic="I doubt it, Optimist.", optimist="Cheer up, Skeptic!")
        said = await w.fake.user_says(w.group, w.alice, "@skeptic_bot will my plan work?")
        await w.fake.wait_for(lambda: len(w.fake.sent(w.group)) >= 3, timeout=10)
        await w.fleet.drain()
        sent = w.fake.sent(w.group)
        assert [s.bot_username for s in sent] == ["skeptic_bot", "optimist_bot", "skeptic_bot"]
        assert [s.reply_to_message_id for s in sent] == [said["message_id"], sent[0].message_id, sent[1].message_id]
        # Telegram showed neither bot the other's words: the fleet carried them.
        seen_by_optimist = [u["message"]["from"]["id"] for u in w.fake.delivered("optimist_bot") if "message" in u]
        assert seen_by_optimist == []
        last = w.fleet.audit[f"telegram:{w.gid}:{sent[2].message_id}"]
        assert [(d.persona_id, d.reason) for d in last.decisions] == [("optimist", "chain_depth:3>2")]


async def test_panel_ask_at_botname_and_mute_only_for_admins(tmp_path: Path) -> None:
    async with telegram_fleet(tmp_path) as w:
        # A bare command reaches every bot; the fleet runs it once.
        panel = await w.fake.user_says(w.group, w.alice, "/panel Should I learn Rust?")
        await w.handled(panel)
        answers = w.fake.sent(w.group)
        assert sorted(s.bot_username for s in answers) == ["fleet_host_bot", "optimist_bot", "skeptic_bot"]
        assert all(s.reply_to_message_id == panel["message_id"] for s in answers)
        assert next(s.text or "" for s in answers if s.bot_username == "fleet_host_bot").startswith("Sage: ")

        ask = await w.fake.user_says(w.group, w.alice, "/ask@optimist_bot what now?")
        plan = await w.handled(ask)
        assert plan.event.persona == "optimist"  # type: ignore[union-attr]
        [new] = w.fake.sent(w.group)[3:]
        assert new.bot_username == "optimist_bot" and new.reply_to_message_id == ask["message_id"]

        # Alice is no admin; she never opened a DM with the host bot, so the refusal lands in the group.
        refused = await w.fake.user_says(w.group, w.alice, "/mute skeptic")
        await w.handled(refused)
        [notice] = w.fake.sent(w.group)[4:]
        assert notice.bot_username == "fleet_host_bot" and notice.reply_to_message_id == refused["message_id"]
        assert notice.text == "Only admins can /mute personas here."
        assert await w.fleet.store.muted(f"telegram:{w.gid}") == set()

        muted = await w.fake.user_says(w.group, w.bob, "/mute skeptic")
        await w.handled(muted)
        assert w.fake.sent(w.group)[-1].text == "The Skeptic muted in this channel."
        ignored = await w.fake.user_says(w.group, w.alice, "@skeptic_bot hello?")
        assert (await w.handled(ignored)).decisions[0].reason == "muted"
        # Alice named it: she hears why it stays silent (no DM open, so in the group).
        assert w.fake.sent(w.group)[-1].text == "The Skeptic is muted in this channel."
        # Three bots received each /mute; one getChatMember per person answered all of them.
        checked = [c.params["user_id"] for c in w.fake.calls_to("getChatMember")]
        assert sorted(checked) == sorted([w.alice["id"], w.bob["id"]])

        # Bob opens a DM with the host bot (the skeptic, with a dm trigger, answers there through it),
        # so a private answer goes there.
        hello = await w.fake.user_dms("fleet_host_bot", w.bob, "hi")
        await w.handled(hello, dm_with="host")
        helped = await w.fake.user_says(w.group, w.bob, "/help")
        await w.handled(helped)
        greeting, dm = w.fake.sent(w.bob["id"])
        assert greeting.text is not None and greeting.text.startswith("The Skeptic: I doubt that.")
        assert dm.bot_username == "fleet_host_bot" and dm.text is not None and "/panel" in dm.text
        assert len(w.fake.sent(w.group)) == 7


async def test_keyword_reactions_come_from_the_persona_bot_or_the_host(tmp_path: Path) -> None:
    async with telegram_fleet(tmp_path) as w:
        said = await w.fake.user_says(w.group, w.alice, "this soup is a scam")
        await w.handled(said)
        assert w.fake.reactions_on(w.group, said["message_id"]) == {
            "skeptic_bot": ["🤨"],
            "fleet_host_bot": ["👍"],
        }
        assert w.fake.sent(w.group) == []


def test_a_reaction_telegram_does_not_allow_fails_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "personas").mkdir()
    persona = tmp_path / "personas" / "fruit.yaml"
    persona.write_text(
        "id: fruit\nname: Fruit\nprompt: You like fruit.\ntriggers: [{mention: true}]\n"
        'reactions:\n  - keywords: [pineapple]\n    emoji: "🍍"\n'
        'platforms: {telegram: {token: "${FRUIT_TELEGRAM_TOKEN:-}"}}\n'
    )
    config = tmp_path / "config.yaml"
    config.write_text("personas_dir: personas\n")
    monkeypatch.delenv("REDIS_URL", raising=False)

    monkeypatch.delenv("FRUIT_TELEGRAM_TOKEN", raising=False)
    assert cli.main(["check", "--config", str(config)]) == 0  # no Telegram: any emoji will do
    capsys.readouterr()

    monkeypatch.setenv("FRUIT_TELEGRAM_TOKEN", "6000:fruit-secret")
    assert cli.main(["check", "--config", str(config)]) == 2
    out = capsys.readouterr().out
    assert f"{persona}:7: reactions[1].emoji: '🍍' is not a reaction Telegram bots may use" in out


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")  # RetryAfter() warns in 22.x
async def test_flood_control_waits_retry_after_and_sends_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with telegram_fleet(tmp_path) as w:
        w.fake.fail_next("sendMessage", chat_id=w.group, retry_after=1, bot="skeptic_bot")
        loop_time = asyncio.get_running_loop().time
        started = loop_time()
        said = await w.fake.user_says(w.group, w.alice, "@skeptic_bot quick question")
        await w.handled(said)
        assert loop_time() - started >= 1.0
        assert [c.error_code for c in w.fake.calls_to("sendMessage", "skeptic_bot")] == [429, None]
        assert len(w.fake.sent(w.group)) == 1
    assert any("flood control" in r.getMessage() for r in caplog.records)
    assert not any(r.levelno >= logging.ERROR for r in caplog.records)


async def test_model_output_is_escaped_and_long_replies_split(tmp_path: Path) -> None:
    async with telegram_fleet(tmp_path) as w:
        raw = "<script>alert(1)</script> & <b>"
        w.voices.lines["skeptic"] = raw
        first = await w.fake.user_says(w.group, w.alice, "@skeptic_bot try this")
        await w.handled(first)
        [sent] = w.fake.sent(w.group)
        assert sent.text is not None and sent.text.startswith(raw)
        call = w.fake.calls_to("sendMessage", "skeptic_bot")[-1]
        assert call.params["parse_mode"] == "HTML"
        assert call.params["text"].startswith("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;")

        long = ("Lorem ipsum dolor sit amet. " * 200)[:5000]
        w.voices.lines["skeptic"] = long
        second = await w.fake.user_says(w.group, w.alice, "@skeptic_bot and at length?")
        await w.handled(second)
        parts = w.fake.sent(w.group)[1:]
        assert len(parts) == 2
        assert parts[0].reply_to_message_id == second["message_id"]
        assert all(p.text is not None and len(p.text) <= 4096 for p in parts)
        assert " ".join(p.text or "" for p in parts).startswith(long.strip())

        # Telegram counts UTF-16 units: 3,000 characters of emoji are 4,500 of them, two messages.
        w.voices.lines["skeptic"] = "🙂 " * 1500
        emoji = await w.fake.user_says(w.group, w.alice, "@skeptic_bot in pictures?")
        await w.handled(emoji)
        assert len(w.fake.sent(w.group)) == 5
        assert all(c.ok for c in w.fake.calls_to("sendMessage"))

        # Should Telegram still refuse the entities, the reply goes out once more as plain text.
        w.voices.lines["skeptic"] = raw
        w.fake.fail_next(
            "sendMessage", chat_id=w.group, error_code=400, description="Bad Request: can't parse entities: odd"
        )
        third = await w.fake.user_says(w.group, w.alice, "@skeptic_bot once more")
        await w.handled(third)
        assert "parse_mode" not in w.fake.calls_to("sendMessage", "skeptic_bot")[-1].params
        assert (w.fake.sent(w.group)[-1].text or "").startswith(raw)


async def test_a_host_bot_persona_signs_in_bold_and_replies_to_it_reach_it(tmp_path: Path) -> None:
    async with telegram_fleet(tmp_path) as w:
        said = await w.fake.user_says(w.group, w.alice, "Sage, what do you think?")
        await w.handled(said)
        [sent] = w.fake.sent(w.group)
        assert sent.bot_username == "fleet_host_bot"
        assert sent.text is not None and sent.text.startswith("Sage: Patience brings answers.")
        assert sent.message["entities"][0] == {"type": "bold", "offset": 0, "length": len("Sage")}

        follow = await w.fake.user_says(w.group, w.alice, "Why so?", reply_to=sent.message_id)
        plan = await w.handled(follow)
        assert [(d.persona_id, d.reason) for d in plan.decisions] == [("sage", "reply")]
        [again] = w.fake.sent(w.group)[1:]
        assert again.bot_username == "fleet_host_bot" and again.reply_to_message_id == follow["message_id"]


async def test_a_rejected_token_takes_out_that_bot_only(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with telegram_fleet(tmp_path, bad_optimist=True) as w:
        adapter = w.fleet.adapters["telegram"]
        assert await adapter.connect("telegram:optimist") is False
        # A lease moving away and back: receiving stops and starts again; sending never depended on it.
        await adapter.disconnect("telegram:skeptic")
        assert await adapter.connect("telegram:skeptic") is True
        said = await w.fake.user_says(w.group, w.alice, "@skeptic_bot still with us?")
        await w.handled(said)
        assert [s.bot_username for s in w.fake.sent(w.group)] == ["skeptic_bot"]

        def fetched_by_skeptic() -> bool:
            polls = [c.result or [] for c in w.fake.calls_to("getUpdates", "skeptic_bot")]
            return any(u.get("message", {}).get("message_id") == said["message_id"] for r in polls for u in r)

        await w.fake.wait_for(fetched_by_skeptic)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("telegram:optimist" in e and "rejected" in e for e in errors)
    assert BAD_TOKEN.partition(":")[2] not in caplog.text


async def test_a_chat_that_forbids_a_bot_is_skipped_without_retries(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with telegram_fleet(tmp_path) as w:
        w.fake.block_chat(w.group, TOKENS["skeptic"])
        for text in ("Skeptic, are you there?", "Skeptic, still there?"):
            said = await w.fake.user_says(w.group, w.alice, text)
            plan = await w.handled(said)
            assert [(d.persona_id, d.action) for d in plan.decisions] == [("skeptic", "reply")]
        to_group = [c for c in w.fake.calls if c.bot_username == "skeptic_bot" and c.params.get("chat_id") == w.gid]
        assert [(c.method, c.error_code) for c in to_group] == [("sendChatAction", 403)]
        assert w.fake.sent(w.group) == []
    warnings = [r for r in caplog.records if "may not post" in r.getMessage()]
    assert len(warnings) == 1


async def test_streamed_replies_are_edited_in_and_a_cut_one_says_so(tmp_path: Path) -> None:
    async with telegram_fleet(tmp_path, stream_edits=True) as w:
        line = "I doubt that very much, frankly speaking."
        w.voices.lines["skeptic"] = line
        said = await w.fake.user_says(w.group, w.alice, "@skeptic_bot stream it")
        await w.handled(said)
        [sent] = w.fake.sent(w.group)
        assert sent.text is not None and sent.text.startswith(line) and not sent.text.endswith("…")
        assert len(w.fake.calls_to("sendMessage", "skeptic_bot")) == 1
        assert w.fake.calls_to("editMessageText", "skeptic_bot")

        w.ai.script(Truncated())
        cut = await w.fake.user_says(w.group, w.alice, "@skeptic_bot again")
        await w.handled(cut)
        [partial] = w.fake.sent(w.group)[1:]
        assert partial.text is not None and partial.text.endswith("… (cut off)")
        assert line.startswith(partial.text.removesuffix(" … (cut off)"))


async def test_a_streamed_reply_the_fleet_withholds_is_removed(tmp_path: Path) -> None:
    async with telegram_fleet(tmp_path, stream_edits=True) as w:
        w.voices.lines["skeptic"] = "Let me think about that for a while, friend. Honestly, you are worthless."
        said = await w.fake.user_says(w.group, w.alice, "@skeptic_bot and me?")
        await w.handled(said)
        # Its first words were on screen while the model wrote on; then the message was deleted.
        [sent] = w.fake.sent(w.group)
        assert sent.deleted
        shown = [str(c.params.get("text", "")) for c in w.fake.calls if c.bot_username == "skeptic_bot"]
        assert not any("worthless" in t for t in shown)


async def test_no_log_line_carries_a_bot_token(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    noisy = [logging.getLogger(n) for n in ("httpx", "httpcore", "telegram", "telegram.ext")]
    levels = [lg.level for lg in noisy]
    try:
        # The rejected token is in PTB's InvalidToken message; the others are in every request URL.
        async with telegram_fleet(tmp_path, bad_optimist=True) as w:
            for lg in noisy:
                lg.setLevel(logging.DEBUG)  # as if someone turned everything up after start
            said = await w.fake.user_says(w.group, w.alice, "@skeptic_bot anything to hide?")
            await w.handled(said)
    finally:
        for lg, level in zip(noisy, levels, strict=True):
            lg.setLevel(level)
    requests = [r.getMessage() for r in caplog.records if r.getMessage().startswith("HTTP Request")]
    telegram_urls = [line for line in requests if "/bot" in line]
    assert telegram_urls and all("***" in line for line in telegram_urls)
    for token in [*TOKENS.values(), BAD_TOKEN]:
        secret = token.partition(":")[2]
        assert secret not in caplog.text
        assert not any(secret in r.getMessage() for r in caplog.records)


async def test_a_channel_post_gets_comments_in_its_thread_which_is_its_own_conversation(tmp_path: Path) -> None:
    async with telegram_fleet(tmp_path, feed=True) as w:
        _, copy = await w.fake.channel_post(w.channel, "We launch a podcast next week")
        assert copy is not None
        thread = copy["message_id"]
        plan = await w.handled(copy, thread=thread)
        assert plan.event.is_post and plan.event.parent_channel == str(w.channel["id"])  # type: ignore[union-attr]
        comments = w.fake.sent(w.group)
        assert len(comments) == 2
        assert all(c.reply_to_message_id == thread and c.message.get("message_thread_id") == thread for c in comments)

        said = await w.fake.user_says(w.group, w.alice, "Sage, which topics?", reply_to=thread)
        plan = await w.handled(said, thread=thread)
        assert [(d.persona_id, d.action) for d in plan.decisions] == [("sage", "reply")]
        answer = w.fake.sent(w.group)[-1]
        assert answer.bot_username == "fleet_host_bot" and answer.message.get("message_thread_id") == thread
        history = await w.fleet.store.history(f"telegram:{w.gid}/{thread}", 50)
        assert history[0].text == "We launch a podcast next week" and len(history) == 5


async def test_replies_and_notices_in_a_forum_topic_name_the_topic(tmp_path: Path) -> None:
    async with telegram_fleet(tmp_path) as w:
        topic = 77
        said = await w.fake.user_says(w.group, w.alice, "@skeptic_bot is this legit?", topic=topic)
        await w.handled(said, thread=topic)
        refused = await w.fake.user_says(w.group, w.alice, "/mute skeptic", topic=topic)
        await w.handled(refused, thread=topic)
        sends = [c for c in w.fake.calls_to("sendMessage") if c.params.get("chat_id") == w.gid]
        # The reply and the notice: each names the topic, so neither can land outside it.
        assert [c.bot_username for c in sends] == ["skeptic_bot", "fleet_host_bot"]
        assert all(c.params.get("message_thread_id") == topic for c in sends)
        assert all(s.message.get("message_thread_id") == topic for s in w.fake.sent(w.group))


async def test_a_forum_topic_configured_as_a_feed_gets_comments_on_each_post(tmp_path: Path) -> None:
    async with telegram_fleet(tmp_path, topic_feed=55) as w:
        said = await w.fake.user_says(w.group, w.alice, "Should I learn the cello at 40?", topic=55)
        plan = await w.handled(said, thread=55)
        assert plan.event.is_post  # type: ignore[union-attr]
        comments = [s for s in w.fake.sent(w.gid) if s.reply_to_message_id == said["message_id"]]
        assert len(comments) == 2 and len({c.bot_username for c in comments} | {c.text for c in comments}) >= 2
        assert all(c.message.get("message_thread_id") == 55 for c in comments)
        # The same words in another topic are just a message: no feed there.
        other = await w.fake.user_says(w.group, w.alice, "Should I learn the cello at 40?", topic=56)
        assert not (await w.handled(other, thread=56)).event.is_post  # type: ignore[union-attr]


async def test_a_foreign_bare_command_in_a_group_is_left_alone_but_a_typo_is_answered(tmp_path: Path) -> None:
    async with telegram_fleet(tmp_path) as w:
        await w.fake.user_says(w.group, w.alice, "/weather Paris")
        typo = await w.fake.user_says(w.group, w.alice, "/pannel Should I learn Rust?")
        await w.handled(typo)
        await w.fleet.drain()
        texts = [s.text or "" for s in w.fake.sent(w.group)]
        assert not any("weather" in t for t in texts)
        assert any("Unknown command /pannel; did you mean /panel?" in t for t in texts), texts
