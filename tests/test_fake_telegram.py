"""Real python-telegram-bot Applications against the fake Bot API in tests/fakes/telegram/: who gets
which message (privacy mode, mentions, commands, DMs, channel forwards, bot-to-bot) and button presses.
The shared apps are in tests/fake_telegram_apps.py."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, MessageEntity, MessageOriginChannel, Update
from telegram.error import Forbidden
from telegram.ext import CallbackQueryHandler, ContextTypes

from tests.fake_telegram_apps import (
    TOKEN_A,
    TOKEN_B,
    Recorder,
    bot_app,
    build_app,
    fake,
    message_of,
    running,
    send_as_bot,
    texts,
)
from tests.fakes.telegram import FakeTelegram

__all__ = ["fake"]  # the fixture, from fake_telegram_apps.py


@pytest.mark.asyncio
async def test_mention_reaches_only_the_mentioned_privacy_bot_which_replies_quoting(
    fake: FakeTelegram,
) -> None:
    alpha, beta = fake.add_bot(TOKEN_A, "alpha_bot", "Alpha"), fake.add_bot(TOKEN_B, "beta_bot", "Beta")
    alice = fake.add_user("Alice", "alice")
    group = fake.add_group("Lounge", members=[alpha["id"], beta["id"], alice["id"]])
    rec_a, rec_b = Recorder(reply="hi Alice"), Recorder()

    async with running(bot_app(fake, TOKEN_A, rec_a), bot_app(fake, TOKEN_B, rec_b)):
        said = await fake.user_says(group, alice, "🙂 hey @alpha_bot, ça va?")
        reply = (await fake.wait_for(lambda: fake.sent(group)))[0]

        # Offsets count UTF-16 units: the emoji is two of them.
        assert said["entities"] == [{"type": "mention", "offset": 7, "length": 10}]
        seen = message_of(rec_a.messages[0])
        assert list(seen.parse_entities([MessageEntity.MENTION]).values()) == ["@alpha_bot"]
        assert reply.bot_username == "alpha_bot"
        assert reply.reply_to_message_id == said["message_id"]
        assert fake.calls_to("sendMessage")[0].params["reply_parameters"] == {"message_id": said["message_id"]}
        assert fake.delivered("beta_bot") == []

        # A plain reply to the bot's own message reaches it without a mention.
        follow_up = await fake.user_says(group, alice, "thanks", reply_to=reply.message_id)
        await fake.wait_for(lambda: len(rec_a.messages) == 2)
        replied = message_of(rec_a.messages[1]).reply_to_message
        assert replied is not None and replied.from_user is not None and replied.from_user.id == alpha["id"]
        assert texts(fake, "alpha_bot") == [said["text"], follow_up["text"]]
        assert rec_b.messages == []


@pytest.mark.asyncio
async def test_privacy_off_bot_gets_plain_messages_but_never_other_bots_messages(fake: FakeTelegram) -> None:
    alpha = fake.add_bot(TOKEN_A, "alpha_bot", "Alpha", can_read_all_group_messages=True)
    beta = fake.add_bot(TOKEN_B, "beta_bot", "Beta", can_read_all_group_messages=True)
    alice = fake.add_user("Alice")
    group = fake.add_group("Lounge", members=[alpha["id"], beta["id"]])
    rec_a, rec_b = Recorder(reply="ack from alpha"), Recorder()

    async with running(bot_app(fake, TOKEN_A, rec_a), bot_app(fake, TOKEN_B, rec_b)):
        await fake.user_says(group, alice, "good morning everyone")
        await fake.wait_for(lambda: fake.sent(group) and rec_b.messages)
        await asyncio.sleep(0.1)  # room for a wrongly routed bot message to arrive

    assert [message_of(u).text for u in rec_b.messages] == ["good morning everyone"]
    assert texts(fake, "beta_bot") == ["good morning everyone"]
    assert [m["text"] for m in fake.history(group)] == ["good morning everyone", "ack from alpha"]


@pytest.mark.asyncio
async def test_addressed_command_goes_only_to_its_bot(fake: FakeTelegram) -> None:
    alpha, beta = fake.add_bot(TOKEN_A, "alpha_bot", "Alpha"), fake.add_bot(TOKEN_B, "beta_bot", "Beta")
    alice = fake.add_user("Alice")
    group = fake.add_group("Lounge", members=[alpha["id"], beta["id"]])
    rec_a, rec_b = Recorder(), Recorder()

    async with running(bot_app(fake, TOKEN_A, rec_a), bot_app(fake, TOKEN_B, rec_b)):
        addressed = await fake.user_says(group, alice, "/ask@beta_bot what is up")
        await fake.wait_for(lambda: rec_b.commands)
        await fake.user_says(group, alice, "/ask everyone")
        await fake.wait_for(lambda: rec_a.commands and len(rec_b.commands) == 2)

    assert addressed["entities"] == [{"type": "bot_command", "offset": 0, "length": 13}]
    assert rec_b.commands == [("ask", ["what", "is", "up"]), ("ask", ["everyone"])]
    assert rec_a.commands == [("ask", ["everyone"])]
    assert texts(fake, "alpha_bot") == ["/ask everyone"]


@pytest.mark.asyncio
async def test_dm_reaches_only_its_bot_and_bots_cannot_open_a_dm(fake: FakeTelegram) -> None:
    alpha = fake.add_bot(TOKEN_A, "alpha_bot", "Alpha")
    fake.add_bot(TOKEN_B, "beta_bot", "Beta")
    alice, bob = fake.add_user("Alice"), fake.add_user("Bob")
    rec_a, rec_b = Recorder(reply="hello in private"), Recorder()
    app_a, app_b = bot_app(fake, TOKEN_A, rec_a), bot_app(fake, TOKEN_B, rec_b)

    async with running(app_a, app_b):
        await fake.user_dms("alpha_bot", alice, "psst")
        sent = (await fake.wait_for(lambda: fake.sent(alice["id"])))[0]
        with pytest.raises(Forbidden, match="can't initiate conversation"):
            await app_b.bot.send_message(bob["id"], "hi stranger")
        with pytest.raises(Forbidden, match="can't send messages to bots"):
            await app_b.bot.send_message(alpha["id"], "hi bot")

    assert sent.bot_username == "alpha_bot"
    assert sent.message["chat"] == {"id": alice["id"], "type": "private", "first_name": "Alice"}
    assert fake.delivered("beta_bot") == []
    assert texts(fake, "alpha_bot") == ["psst"]


@pytest.mark.asyncio
async def test_channel_post_is_forwarded_to_the_discussion_group(fake: FakeTelegram) -> None:
    reader = fake.add_bot(TOKEN_A, "reader_bot", "Reader", can_read_all_group_messages=True)
    shy = fake.add_bot(TOKEN_B, "shy_bot", "Shy")
    alice = fake.add_user("Alice")
    group = fake.add_group("Comments", members=[reader["id"], shy["id"]])
    channel = fake.add_channel("News", discussion_group=group)
    rec_reader, rec_shy = Recorder(), Recorder()
    reader_app = bot_app(fake, TOKEN_A, rec_reader)

    async with running(reader_app, bot_app(fake, TOKEN_B, rec_shy)):
        post, forwarded = await fake.channel_post(channel, "Release 1.0 is out")
        assert forwarded is not None
        await fake.wait_for(lambda: rec_reader.messages)
        comment = await fake.user_says(group, alice, "congrats!", reply_to=forwarded["message_id"])
        await fake.wait_for(lambda: len(rec_reader.messages) == 2)
        chat = await reader_app.bot.get_chat(group["id"])

    seen = message_of(rec_reader.messages[0])
    assert seen.is_automatic_forward
    assert seen.sender_chat is not None and seen.sender_chat.id == channel["id"]
    assert seen.from_user is not None and seen.from_user.id == 777000
    assert isinstance(seen.forward_origin, MessageOriginChannel)
    assert seen.forward_origin.message_id == post["message_id"]
    assert comment["message_thread_id"] == forwarded["message_id"]
    assert fake.delivered("shy_bot") == []
    assert chat.linked_chat_id == channel["id"]


@pytest.mark.asyncio
async def test_routing_rules_for_admins_replies_bot_to_bot_and_last_bot_commands(fake: FakeTelegram) -> None:
    tokens = {name: f"{2000 + i}:test-token-{name}" for i, name in enumerate(["shy", "coy", "boss", "loud", "pal"])}
    fake.add_bot(tokens["shy"], "shy_bot", "Shy")
    fake.add_bot(tokens["coy"], "coy_bot", "Coy")
    fake.add_bot(tokens["boss"], "boss_bot", "Boss")  # privacy on, but admins read everything
    fake.add_bot(tokens["loud"], "loud_bot", "Loud", can_read_all_group_messages=True)
    fake.add_bot(tokens["pal"], "pal_bot", "Pal", bot_to_bot=True)
    alice = fake.add_user("Alice")
    group = fake.add_group("Lounge", admins=[2002], members=[2000, 2001, 2003, 2004])

    def receivers(text: str) -> set[str]:
        return {
            name
            for name in ("shy_bot", "coy_bot", "boss_bot", "loud_bot", "pal_bot")
            if any(u.get("message", {}).get("text") == text for u in fake.delivered(name))
        }

    await fake.user_says(group, alice, "plain chatter")
    await fake.user_says(group, alice, "@shy_bot and @coy_bot, lunch?")
    assert receivers("plain chatter") == {"boss_bot", "loud_bot"}
    assert receivers("@shy_bot and @coy_bot, lunch?") == {"boss_bot", "loud_bot", "shy_bot", "coy_bot"}

    async with aiohttp.ClientSession() as http:
        from_shy = await send_as_bot(http, fake, tokens["shy"], chat_id=group["id"], text="I am shy")
        # Replies win: a reply to shy_bot that commands coy_bot is for shy_bot alone among privacy bots.
        await fake.user_says(group, alice, "/ask@coy_bot hm", reply_to=from_shy["message_id"])
        assert receivers("/ask@coy_bot hm") == {"boss_bot", "loud_bot", "shy_bot"}

        await send_as_bot(http, fake, tokens["loud"], chat_id=group["id"], text="bots chatting")
        await send_as_bot(http, fake, tokens["loud"], chat_id=group["id"], text="/ask@pal_bot ping")
        from_pal = await send_as_bot(http, fake, tokens["pal"], chat_id=group["id"], text="pal here")
        await send_as_bot(
            http,
            fake,
            tokens["loud"],
            chat_id=group["id"],
            text="re: pal",
            reply_parameters={"message_id": from_pal["message_id"]},
        )
        # The Bot FAQ's stricter rule: a bare command reaches only the privacy bot that spoke last.
        fake.general_commands = "last_bot"
        await send_as_bot(http, fake, tokens["coy"], chat_id=group["id"], text="coy speaks last")
        await fake.user_says(group, alice, "/help")
    assert receivers("/help") == {"boss_bot", "loud_bot", "coy_bot"}
    assert receivers("bots chatting") == set()
    assert receivers("/ask@pal_bot ping") == {"pal_bot"}  # Bot-to-Bot mode: addressed commands...
    assert receivers("re: pal") == {"pal_bot"}  # ...and direct replies, nothing else
    assert receivers("I am shy") == set()


@pytest.mark.asyncio
async def test_inline_button_press_reaches_the_bot_that_sent_the_keyboard(fake: FakeTelegram) -> None:
    alpha = fake.add_bot(TOKEN_A, "alpha_bot", "Alpha")
    alice = fake.add_user("Alice")
    group = fake.add_group("Lounge", members=[alpha["id"]])
    app = build_app(fake, TOKEN_A)

    async def on_press(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None
        await query.answer()
        await query.edit_message_text(f"you chose {query.data}")

    app.add_handler(CallbackQueryHandler(on_press))
    async with running(app):
        keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Tea", callback_data="tea")]])
        prompt = await app.bot.send_message(group["id"], "Tea or coffee?", reply_markup=keyboard)
        assert prompt.reply_markup == keyboard
        await fake.user_presses_button(group, alice, prompt.message_id, "tea")
        await fake.wait_for(lambda: fake.sent(group)[0].text == "you chose tea")

    assert "reply_markup" not in fake.sent(group)[0].message  # an edit without markup drops it
    assert [c.ok for c in fake.calls_to("answerCallbackQuery")] == [True]
