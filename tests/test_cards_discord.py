"""An imported character on Discord: it speaks through the host's webhook under its name, greets the
channel once, and its avatar file (not a URL Discord could fetch) is left out of the webhook call."""

from __future__ import annotations

from tests.discord_world import World, make_persona, running, world

__all__ = ["world"]  # the fixture, from discord_world.py


async def test_an_imported_character_greets_once_and_sends_no_file_path_as_avatar(world: World) -> None:
    fake = world.fake
    mira = make_persona("mira", "Mira", avatar="mira.png", greeting="*waves* Hello {{user}}, I'm {{char}}.")
    async with running(world, [mira], about={"disclosure": ""}):
        await fake.post_message(world.general, world.alice, "mira, are you there?")
        (first,) = await fake.wait_for(lambda: world.persona_messages(world.general))
        await fake.post_message(world.general, world.alice, "mira, and now?")
        await fake.wait_for(lambda: len(world.persona_messages(world.general)) == 2)
        second = world.persona_messages(world.general)[1]
    assert first["author"]["username"] == "Mira"
    assert first["content"].endswith("*waves* Hello alice, I'm Mira.\n\nmira here: noted.")
    assert second["content"].endswith("\nmira here: noted.") and "Hello" not in second["content"]
    calls = fake.calls_to("POST", r"^/webhooks/")
    assert calls and all("avatar_url" not in call.json for call in calls)
