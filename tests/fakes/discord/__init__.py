"""An in-process fake Discord (REST + gateway) that the real discord.py talks to.

Several bot accounts can connect at once from one event loop; humans are scripted by the test::

    async with FakeDiscord() as fake:
        fake.add_bot("host-token", "Host")
        guild = fake.add_guild("Test")
        general = fake.add_channel(guild, "general")
        alice = fake.add_user("alice")
        with point_discord_py_at(fake):
            client = discord.Client(intents=intents, guild_ready_timeout=0.05)
            task = asyncio.create_task(client.start("host-token"))
            await client.wait_until_ready()
            await fake.post_message(general, alice, "hello")
            await fake.wait_for(lambda: fake.messages(general, author=client.user.id))
            await client.close()
            await task

Ids in payloads are strings, as on the wire; every method that takes an id also takes an int or
the dict that the fake returned (``fake.messages(general)`` works as well as ``(general["id"])``).

Fidelity worth knowing before asserting on it:

- Every bot is a member of every guild. ``deny_channel`` only affects REST (403, code 50013): the
  gateway still shows full permissions, like a stale cache, so product code reaches the error path.
- A message's ``mentions`` lists only the users that ``allowed_mentions`` let through (plus the
  replied-to author when ``replied_user`` is set), as Discord does, so a test can assert "nobody
  was pinged" on ``fake.messages(...)[-1]["mentions"]``.
- Without the MESSAGE_CONTENT intent a bot receives other people's messages with empty content
  unless it is mentioned; without GUILD_MESSAGES it receives none.
- A ``nonce`` sent with ``enforce_nonce`` is deduplicated per author and channel, so discord.py's
  retries after a 5xx (see :meth:`FakeDiscord.fail_next`) cannot post twice.
- Direct messages (:meth:`FakeDiscord.post_dm`, ``POST /users/@me/channels``) live in one DM channel
  per bot and human (type 1, ``recipients`` is the human). Their events go only to that bot's sessions
  with the DIRECT_MESSAGES intent, with content whatever MESSAGE_CONTENT says (as Discord exempts DMs),
  and without CHANNEL_CREATE, as on Discord: discord.py builds the DMChannel from ``channel_id``.
  Other bots get 403 code 50001 on a DM channel; webhooks and threads there get 403 code 50003.
- Sharding: ``set_shards(bot, n)`` makes ``GET /gateway/bot`` recommend ``n`` shards and (by default)
  closes an IDENTIFY without a ``shard`` with 4011. A session that identified as ``[i, n]`` hears only
  the guilds with ``(guild_id >> 22) % n == i`` (READY, GUILD_CREATE, messages, reactions, channel and
  thread events, interactions) and, for ``i == 0``, the bot's DMs. ``fake.identifies`` records every
  accepted IDENTIFY (bot, shard, monotonic time), so a test can check identify pacing per bucket.
- After a deferred interaction response the first follow-up edits the "thinking" message instead
  of creating one (MESSAGE_UPDATE, not MESSAGE_CREATE), and callbacks later than
  ``interaction_timeout`` seconds get 404 code 10062, as on Discord.
"""

from tests.fakes.discord.models import ApiError, Call, FakeInteraction, IdLike, JsonDict, Reaction
from tests.fakes.discord.server import FakeDiscord, point_discord_py_at

__all__ = [
    "ApiError",
    "Call",
    "FakeDiscord",
    "FakeInteraction",
    "IdLike",
    "JsonDict",
    "Reaction",
    "point_discord_py_at",
]
