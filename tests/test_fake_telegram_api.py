"""The fake Bot API's methods against real python-telegram-bot: HTML parsing, scripted errors, tokens,
reactions, members, edits, command menus and the long poll. The shared apps are in tests/fake_telegram_apps.py."""

from __future__ import annotations

import asyncio
import html
import json
import re

import aiohttp
import pytest
from telegram import (
    BotCommandScopeAllChatAdministrators,
    BotCommandScopeAllGroupChats,
    BotCommandScopeAllPrivateChats,
    BotCommandScopeChat,
    BotCommandScopeChatMember,
    ChatMemberAdministrator,
    ChatMemberMember,
    ChatMemberOwner,
    MessageEntity,
    ReactionTypeEmoji,
)
from telegram.constants import ParseMode, ReactionEmoji
from telegram.error import BadRequest, EndPointNotFound, Forbidden, InvalidToken, RetryAfter

from tests.fake_telegram_apps import TOKEN_A, build_app, fake, running
from tests.fakes.telegram import ApiError, FakeTelegram, JSONDict, parse_html

__all__ = ["fake"]  # the fixture, from fake_telegram_apps.py


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
