"""Telegram through python-telegram-bot 22: one Application per bot token, all in the fleet's event loop.

A persona with `platforms.telegram.token` is its own bot; every other persona speaks through the host
bot (`adapters.telegram.token`) with its name in bold. Bots never see each other's messages, so the
fleet feeds its own sends back as turns (Fleet.feed_back); this adapter only turns what humans write
into events and carries replies, reactions and notices out, within Telegram's flood limits.

Modules, one job each:
    adapter   TelegramAdapter: the Adapter protocol, the bots' lifecycle, wiring of the parts
    places    Place: chats, forum topics, comment threads and private chats as the fleet's ids
    roster    BotAccount and Roster: the bots, their lookups, and who speaks where
    inbound   Inbound: updates -> Message / Command events, command parsing, admin checks
    outbound  Outbound: deliver / react / notify
    post      Post: a reply on screen, streamed in by edits; text splitting in UTF-16 units
    lanes     Lanes: per bot and chat pacing (1/s per chat, 20/min per group) and 429 pauses, booked
              in the fleet's pacer (shared by all processes with a Redis store); typing; chats
              closed to a bot
    menu      the "/" command menus, per scope, generated from bots.core.commands.COMMANDS
    logguard  which tokens the fleet's log masker (bots.ops.logs) hides, and where PTB logs them
    emoji     the reactions Telegram allows (`botfleet check` uses it without starting a bot)

Public seam for outside test harnesses: every telegram `Bot`/`Application` is built by ONE method,
`TelegramAdapter.make_application(account)` (account as in `accounts()`, e.g. "telegram:host").
Override it in a subclass to point the bots at another Bot API server or wrap their requests; the
adapter adds its update handler, initializes, polls and shuts down whatever it returns. Pacing,
streaming-edit throttling, typing and the admin cache take time from the fleet (`FleetView.clock`
and `FleetView.sleep`), never from the event loop directly; `TelegramAdapter.limits` scales the
flood limits.
"""

from adapters.telegram.adapter import TelegramAdapter

__all__ = ["TelegramAdapter"]
