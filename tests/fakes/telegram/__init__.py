"""An in-process fake of the Telegram Bot API for real python-telegram-bot Applications.

Several PTB ``Application`` objects poll it at once from one event loop::

    async with FakeTelegram() as fake:
        fake.add_bot("1001:test-token-alpha", "alpha_bot", "Alpha")
        app = ApplicationBuilder().token("1001:test-token-alpha").base_url(fake.base_url).build()
        ...
        await fake.user_says(group, alice, "@alpha_bot hello")

The server keeps a small world (users, bots, supergroups, channels with a linked discussion
group) and routes injected human messages the way Telegram does, because the product's turn-taking
depends on who sees what:

* Bots never receive messages written by other bots (unless a bot has ``bot_to_bot`` on, and then
  only ``/cmd@thatbot`` and direct replies to it).
* Bots that read everything (privacy mode off, or admin of the group) get every human message.
* Privacy-mode bots get commands (``/cmd`` for everyone, ``/cmd@thisbot`` for this bot only),
  ``@username`` / ``text_mention`` mentions, and replies to their own messages. A reply to a
  privacy-mode bot goes to that bot alone among privacy-mode bots, as the Bot FAQ says
  ("replies have the highest priority").
* A DM goes only to the bot it was sent to.

Assumptions where Telegram's documentation is silent or contradicts practice:

* Bare ``/cmd`` reaches every privacy-mode bot (``general_commands="all"``). The Bot FAQ says only
  "the last bot to send a message to the group" gets it; ``general_commands="last_bot"`` models that.
* The automatic forward of a channel post into the discussion group is authored by the channel
  (``from`` is the 777000 "Telegram" service user), so it follows the human rules: bots that read
  everything get it, privacy-mode bots only when it mentions or commands them.
* Anything a bot wrote, including its channel posts and their automatic forwards, reaches no other
  bot; that is the conservative reading of "bots will not be able to see messages from other bots
  regardless of mode".
* HTML: Telegram itself lets a bare ``&`` through as a literal, but its documentation says it must
  be escaped and an unescaped ``&amp;`` in user text silently turns into ``&``. With
  ``html_strict=True`` (the default) a bare ``&`` is a 400, so escaping bugs surface in tests.
  Other errors copy TDLib's messages.
* Markdown parse modes are accepted and not validated.

Public surface: ``start/stop`` (or ``async with``), ``base_url``, ``base_file_url``; world:
``add_bot``, ``add_user``, ``add_group``, ``add_channel``, ``add_member``; humans: ``user_says``,
``user_dms``, ``channel_post``, ``user_presses_button``; faults: ``fail_next``, ``block_chat``;
inspection: ``calls``, ``calls_to``, ``sent``, ``history``, ``delivered``, ``reactions_on``,
``commands_of``, ``menu_for``, ``wait_for``.
"""

from tests.fakes.telegram.html import parse_html
from tests.fakes.telegram.models import ApiError, Call, JSONDict, SentMessage
from tests.fakes.telegram.server import FakeTelegram

__all__ = ["ApiError", "Call", "FakeTelegram", "JSONDict", "SentMessage", "parse_html"]
