"""Real python-telegram-bot Applications against the fake Bot API in tests/fakes/telegram/."""

from __future__ import annotations

import asyncio
import html
import json
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeAlias

import aiohttp
import pytest
import pytest_asyncio
from telegram import (
    BotCommandScopeAllChatAdministrators,
    BotCommandScopeAllGroupChats,
    BotCommandScopeAllPrivateChats,
    BotCommandScopeChat,
    BotCommandScopeChatMember,
    ChatMemberAdministrator,
    ChatMemberMember,
    ChatMemberOwner,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    MessageEntity,
    MessageOriginChannel,
    ReactionTypeEmoji,
    Update,
)
from telegram.constants import ParseMode, ReactionEmoji
from telegram.error import BadRequest, EndPointNotFound, Forbidden, InvalidToken, RetryAfter
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from tests.fakes.telegram import ApiError, FakeTelegram, JSONDict, parse_html

# httpx logs every request URL at INFO, and the URL carries the bot token.
logging.getLogger("httpx").setLevel(logging.WARNING)

TOKEN_A = "1001:test-token-alpha"
TOKEN_B = "1002:test-token-beta"

App: TypeAlias = Application[Any, Any, Any, Any, Any, Any]


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        yield server


def build_app(fake: FakeTelegram, token: str) -> App:
    return ApplicationBuilder().token(token).base_url(fake.base_url).base_file_url(fake.base_file_url).build()


@asynccontextmanager
async def running(*apps: App) -> AsyncIterator[None]:
    """The multi-bot lifecycle: never run_polling, which would own the event loop."""
    started: list[App] = []
    try:
        for app in apps:
            await app.initialize()
            started.append(app)
            assert app.updater is not None
            await app.updater.start_polling(poll_interval=0, timeout=1)
            await app.start()
        yield
    finally:
        for app in reversed(started):
            if app.updater and app.updater.running:
                await app.updater.stop()
            if app.running:
                await app.stop()
            await app.shutdown()


class Recorder:
    """Collects what a bot's handlers saw, and optionally answers as the bot."""

    def __init__(self, reply: str | None = None) -> None:
        self.reply = reply
        self.messages: list[Update] = []
        self.commands: list[tuple[str, list[str]]] = []

    async def on_message(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        self.messages.append(update)
        if self.reply and update.effective_message:
            await update.effective_message.reply_text(self.reply, do_quote=True)

    async def on_ask(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        self.commands.append(("ask", list(context.args or [])))


def bot_app(fake: FakeTelegram, token: str, recorder: Recorder) -> App:
    app = build_app(fake, token)
    app.add_handler(CommandHandler("ask", recorder.on_ask))
    app.add_handler(MessageHandler(filters.ALL & ~filters.COMMAND, recorder.on_message))
    return app


def texts(fake: FakeTelegram, bot: str) -> list[str]:
    return [u["message"]["text"] for u in fake.delivered(bot) if "message" in u]


def message_of(update: Update) -> Message:
    assert update.effective_message is not None
    return update.effective_message


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
async def test_html_is_validated_like_telegram(fake: FakeTelegram) -> None:
    alpha = fake.add_bot(TOKEN_A, "alpha_bot", "Alpha")
    group = fake.add_group("Lounge", members=[alpha["id"]])
    app = build_app(fake, TOKEN_A)

    async with running(app):
        # PTB drops "Bad Request: " and str.capitalize()s the rest, lowercasing TDLib's capitals.
        with pytest.raises(BadRequest, match='Can\'t parse entities: unsupported start tag "script"'):
            await app.bot.send_message(group["id"], "<script>alert(1)</script>", parse_mode=ParseMode.HTML)
        with pytest.raises(BadRequest, match="Can't parse entities"):
            await app.bot.send_message(group["id"], "fish & chips", parse_mode=ParseMode.HTML)
        with pytest.raises(BadRequest, match="Message is too long"):
            await app.bot.send_message(group["id"], "🙂" * 2049)

        raw = "<script> & 1 < 2"
        escaped = await app.bot.send_message(group["id"], f"<b>{html.escape(raw)}</b> ok", parse_mode=ParseMode.HTML)

    assert escaped.text == f"{raw} ok"
    assert escaped.entities == (MessageEntity(MessageEntity.BOLD, 0, len(raw)),)
    assert escaped.text_html == f"<b>{html.escape(raw, quote=False)}</b> ok"
    assert [s.text for s in fake.sent(group)] == [escaped.text]


def test_html_parser_edge_cases() -> None:
    assert parse_html('<a href="https://x.test/?a=1&amp;b=2">link</a>') == (
        "link",
        [{"type": "text_link", "offset": 0, "length": 4, "url": "https://x.test/?a=1&b=2"}],
    )
    assert parse_html('<pre><code class="language-py">x = 1</code></pre>') == (
        "x = 1",
        [{"type": "pre", "offset": 0, "length": 5, "language": "py"}],
    )
    assert parse_html("AT&T", strict=False) == ("AT&T", [])
    for bad, reason in [
        ("<b>bold", 'Can\'t find end tag corresponding to start tag "b"'),
        ("<b>x</i>", 'Unmatched end tag at byte offset 4, expected "</b>", found "</i>"'),
        ("1 < 2", 'Unsupported start tag "" at byte offset 2'),
        ('<span class="x">s</span>', 'Tag "span" must have class "tg-spoiler"'),
    ]:
        with pytest.raises(ApiError, match=re.escape(reason)) as caught:
            parse_html(bad)
        assert caught.value.code == 400
        assert caught.value.description.startswith("Bad Request: can't parse entities: ")


@pytest.mark.asyncio
@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
async def test_scripted_errors_surface_as_ptb_exceptions(fake: FakeTelegram) -> None:
    alpha = fake.add_bot(TOKEN_A, "alpha_bot", "Alpha")
    group = fake.add_group("Lounge", members=[alpha["id"]])
    other = fake.add_group("Elsewhere", members=[alpha["id"]])
    app = build_app(fake, TOKEN_A)

    async with running(app):
        fake.fail_next("sendMessage", chat_id=group["id"], retry_after=3)
        await app.bot.send_message(other["id"], "unaffected: the fault is for another chat")
        with pytest.raises(RetryAfter, match="Retry in 3 seconds"):
            await app.bot.send_message(group["id"], "too fast")
        await app.bot.send_message(group["id"], "the fault was one-shot")

        fake.block_chat(group["id"], TOKEN_A)
        with pytest.raises(Forbidden, match="bot was kicked from the supergroup chat"):
            await app.bot.send_message(group["id"], "anyone there?")
        with pytest.raises(EndPointNotFound):
            await app.bot.do_api_request("sendTelepathy", api_kwargs={"chat_id": other["id"]})

    failed = [c for c in fake.calls if c.error_code is not None]
    assert [(c.method, c.error_code) for c in failed] == [
        ("sendMessage", 429),
        ("sendMessage", 403),
        ("sendTelepathy", 404),
    ]
    assert [s.text for s in fake.sent()] == [
        "unaffected: the fault is for another chat",
        "the fault was one-shot",
    ]


@pytest.mark.asyncio
async def test_unknown_token_fails_initialize(fake: FakeTelegram) -> None:
    app = build_app(fake, "4242:test-token-unknown")
    with pytest.raises(InvalidToken):
        await app.initialize()
    await app.bot.shutdown()  # initialize() opened the HTTP clients before getMe failed
    assert [(c.method, c.error_code, c.bot_username) for c in fake.calls] == [("getMe", 401, None)]


@pytest.mark.asyncio
async def test_reactions_accept_only_telegram_emoji(fake: FakeTelegram) -> None:
    alpha = fake.add_bot(TOKEN_A, "alpha_bot", "Alpha")
    alice = fake.add_user("Alice")
    group = fake.add_group("Lounge", members=[alpha["id"]])
    app = build_app(fake, TOKEN_A)

    async with running(app):
        said = await fake.user_says(group, alice, "I made soup")
        assert await app.bot.set_message_reaction(group["id"], said["message_id"], ReactionEmoji.THUMBS_UP)
        for invalid in ("🍍", "❤️"):  # the heart with VS16 is not the allowed "❤"
            with pytest.raises(BadRequest, match="Reaction_invalid"):
                await app.bot.set_message_reaction(group["id"], said["message_id"], invalid)
        with pytest.raises(BadRequest, match="Reactions_too_many"):
            await app.bot.set_message_reaction(
                group["id"], said["message_id"], [ReactionTypeEmoji("👍"), ReactionTypeEmoji("🔥")]
            )

    assert fake.reactions_on(group, said["message_id"]) == {"alpha_bot": ["👍"]}
    assert fake.calls_to("setMessageReaction")[0].params["reaction"] == [{"type": "emoji", "emoji": "👍"}]


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
async def test_members_commands_and_edits(fake: FakeTelegram) -> None:
    alpha = fake.add_bot(TOKEN_A, "alpha_bot", "Alpha")
    alice, bob, carol = fake.add_user("Alice"), fake.add_user("Bob"), fake.add_user("Carol")
    group = fake.add_group("Lounge", admins=[bob["id"]], members=[alpha["id"], carol["id"]], creator=alice)
    app = build_app(fake, TOKEN_A)

    async with running(app):
        bot = app.bot
        assert isinstance(await bot.get_chat_member(group["id"], alice["id"]), ChatMemberOwner)
        assert isinstance(await bot.get_chat_member(group["id"], bob["id"]), ChatMemberAdministrator)
        assert isinstance(await bot.get_chat_member(group["id"], carol["id"]), ChatMemberMember)

        assert await bot.set_my_commands([("ask", "Ask the bot something")])
        assert [c.command for c in await bot.get_my_commands()] == ["ask"]
        with pytest.raises(BadRequest, match="Bot_command_invalid"):
            await bot.set_my_commands([("Ask-Me", "uppercase and dashes are not allowed")])
        assert await bot.delete_my_commands()
        assert await bot.get_my_commands() == ()

        assert await bot.send_chat_action(group["id"], "typing")
        draft = await bot.send_message(group["id"], "thinking…")
        edited = await draft.edit_text("done")
        with pytest.raises(BadRequest, match="Message is not modified"):
            await edited.edit_text("done")

    assert edited.edit_date is not None
    assert [s.text for s in fake.sent(group)] == ["done"]
    me = fake.calls_to("getMe")[0].result
    assert me["username"] == "alpha_bot" and me["can_read_all_group_messages"] is False


@pytest.mark.asyncio
async def test_command_menus_follow_telegrams_scope_order(fake: FakeTelegram) -> None:
    alpha = fake.add_bot(TOKEN_A, "alpha_bot", "Alpha")
    alice, bob, carol = fake.add_user("Alice"), fake.add_user("Bob"), fake.add_user("Carol")
    group = fake.add_group("Lounge", admins=[bob["id"]], members=[alpha["id"], alice["id"], carol["id"]])
    app = build_app(fake, TOKEN_A)

    async with running(app):
        bot = app.bot
        assert fake.menu_for("alpha_bot", alice) == []  # nothing registered: no menu
        await bot.set_my_commands([("help", "Help")])
        await bot.set_my_commands([("help", "Help"), ("mute", "Mute")], scope=BotCommandScopeAllGroupChats())
        await bot.set_my_commands([("help", "Help"), ("dm", "DM only")], scope=BotCommandScopeAllPrivateChats())
        await bot.set_my_commands([("kick", "Kick")], scope=BotCommandScopeAllChatAdministrators())
        await bot.set_my_commands([("hi", "Hi")], scope=BotCommandScopeChatMember(group["id"], carol["id"]))
        await bot.set_my_commands([("mine", "Mine")], scope=BotCommandScopeChat(alice["id"]), language_code="de")
        for_private = await bot.get_my_commands(scope=BotCommandScopeAllPrivateChats())
        assert [c.command for c in for_private] == ["help", "dm"]

        assert fake.menu_for("alpha_bot", alice) == ["help", "dm"]  # a private chat: all_private_chats
        assert fake.menu_for("alpha_bot", alice, language="de") == ["mine"]  # chat + language wins
        assert fake.menu_for("alpha_bot", group, alice) == ["help", "mute"]  # a member: all_group_chats
        assert fake.menu_for("alpha_bot", group, bob) == ["kick"]  # an admin: all_chat_administrators
        assert fake.menu_for("alpha_bot", group, carol) == ["hi"]  # chat_member is the most specific
        await bot.delete_my_commands(scope=BotCommandScopeAllPrivateChats())
        assert fake.menu_for("alpha_bot", alice) == ["help"]  # back to the default scope

    # Scopes PTB would refuse to build, sent raw: the fake refuses them as Telegram does.
    async with aiohttp.ClientSession() as http:
        for scope in ({"type": "chat"}, {"type": "everyone"}):
            form = {"commands": json.dumps([{"command": "x", "description": "X"}]), "scope": json.dumps(scope)}
            async with http.post(f"{fake.base_url}{TOKEN_A}/setMyCommands", data=form) as response:
                assert response.status == 400
    assert fake.menu_for("alpha_bot", alice) == ["help"]


@pytest.mark.asyncio
async def test_long_poll_waits_acknowledges_and_ends_on_stop() -> None:
    async with FakeTelegram() as fake, aiohttp.ClientSession() as http:
        fake.add_bot(TOKEN_A, "alpha_bot", "Alpha")
        alice = fake.add_user("Alice")
        url = f"{fake.base_url}{TOKEN_A}/getUpdates"

        async def poll(**form: str) -> JSONDict:
            async with http.post(url, data=form) as response:
                body: JSONDict = await response.json()
                return body

        waiting = asyncio.create_task(poll(timeout="30"))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        await fake.user_dms("alpha_bot", alice, "wake up")
        first = await asyncio.wait_for(waiting, 2)
        update_id = first["result"][0]["update_id"]

        assert (await poll(timeout="0"))["result"] == first["result"]  # not acknowledged yet
        assert (await poll(offset=str(update_id + 1), timeout="0"))["result"] == []

        # Telegram answers the older of two concurrent polls with 409, not the newer one.
        older = asyncio.create_task(poll(timeout="30"))
        await asyncio.sleep(0.05)
        newer = asyncio.create_task(poll(timeout="30"))
        assert (await asyncio.wait_for(older, 2))["error_code"] == 409

        await asyncio.sleep(0.05)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await fake.stop()
        assert (await asyncio.wait_for(newer, 2))["result"] == []
        assert loop.time() - started < 1.5


async def send_as_bot(http: aiohttp.ClientSession, fake: FakeTelegram, token: str, **form: Any) -> JSONDict:
    data = {k: v if isinstance(v, str) else json.dumps(v) for k, v in form.items()}
    async with http.post(f"{fake.base_url}{token}/sendMessage", data=data) as response:
        body: JSONDict = await response.json()
    assert body["ok"], body
    result: JSONDict = body["result"]
    return result


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
