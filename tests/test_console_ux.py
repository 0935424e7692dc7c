"""Issue 12.12 and 12.13: silence is explained (in the core, for every platform), and the console on a
terminal keeps log lines out of the chat, shows a prompt and a hint, and never writes over typing."""

from __future__ import annotations

from bots.core.events import Author, Command, Notice, Reply
from bots.core.plan import Plan
from tests.conftest import HUMAN, make_fleet, msg, persona

BOB = Author(id="u2", name="bob")


def cmd(name: str, args: str = "", author: Author = HUMAN, **kw: object) -> Command:
    msg.counter += 1  # type: ignore[attr-defined]
    return Command("test", f"c{msg.counter}", "general", author, name, args, **kw)  # type: ignore[arg-type]


def notices(plan: Plan) -> list[Notice]:
    return [a for a in plan.actions if isinstance(a, Notice)]


def replies(plan: Plan) -> list[str]:
    return [a.persona_id for a in plan.actions if isinstance(a, Reply)]


NERD = persona("nerd", name="The Nerd", limits={"per_user_per_minute": 1})
SKEPTIC = persona("skeptic", name="The Skeptic")


async def test_a_rate_limited_mention_is_told_once_a_minute_per_person() -> None:
    fleet, _, clock = make_fleet([NERD, SKEPTIC])
    assert replies(await fleet.handle(msg("@nerd what is 2+2"))) == ["nerd"]
    clock.advance(41)
    plan = await fleet.handle(msg("@nerd and now?"))
    assert replies(plan) == []
    [told] = notices(plan)
    assert told.text == "The Nerd is busy here; try again in 19 s."
    assert told.private and told.to_user == HUMAN.id and told.reply_to == plan.event.id
    # Once a minute per person: the next miss is silent again, another person is still told.
    clock.advance(1)
    assert notices(await fleet.handle(msg("@nerd hello?"))) == []
    assert [n.to_user for n in notices(await fleet.handle(msg("@nerd", author=BOB)))] == []  # bob may ask: no skip
    clock.advance(1)
    bob_again = await fleet.handle(msg("@nerd again", author=BOB))
    assert [n.to_user for n in notices(bob_again)] == [BOB.id]
    clock.advance(60)
    assert len(notices(await fleet.handle(msg("@nerd hello?")))) == 0  # the limit let it answer
    clock.advance(1)
    assert len(notices(await fleet.handle(msg("@nerd once more")))) == 1


async def test_a_muted_mention_says_so_and_an_unnamed_persona_stays_silent() -> None:
    chatty = persona("chatty", triggers=[{"keywords": ["hello"]}], limits={"cooldown_seconds": 60})
    fleet, _, _ = make_fleet([NERD, chatty])
    await fleet.handle(cmd("mute", "nerd", author=Author("u9", "mod", is_admin=True)))
    plan = await fleet.handle(msg("hello @nerd"))
    assert [n.text for n in notices(plan)] == ["The Nerd is muted in this channel."]
    # A keyword hit that is rate-limited was not addressed by name: no notice for it.
    fleet2, _, _ = make_fleet([chatty])
    await fleet2.handle(msg("hello"))
    assert notices(await fleet2.handle(msg("hello", author=BOB))) == []


async def test_persona_messages_never_get_a_notice() -> None:
    fleet, _, _ = make_fleet([NERD, SKEPTIC], max_bot_chain=0)
    bot = Author(id="persona:skeptic", name="The Skeptic", is_bot=True, persona_id="skeptic")
    plan = await fleet.handle(msg("@nerd what do you think?", author=bot))
    assert replies(plan) == [] and notices(plan) == []


async def test_an_unknown_command_gets_a_one_line_error_with_the_closest_match() -> None:
    fleet, _, _ = make_fleet([NERD, SKEPTIC])
    [typo] = notices(await fleet.handle(cmd("pannel", "is a bakery a good idea?")))
    assert typo.text == "Unknown command /pannel; did you mean /panel?" and typo.private
    [unknown] = notices(await fleet.handle(cmd("frobnicate")))
    assert unknown.text == "Unknown command /frobnicate; /help lists the commands."


async def test_ask_with_a_name_that_is_no_persona_says_so_and_a_plain_question_still_asks() -> None:
    fleet, _, _ = make_fleet([NERD, SKEPTIC])
    plan = await fleet.handle(cmd("ask", "@nobody what?"))
    assert replies(plan) == []
    assert [n.text for n in notices(plan)] == ["No persona called 'nobody'; /personas lists them."]
    plan = await fleet.handle(cmd("ask", "skeptik is this a good deal?"))
    assert replies(plan) == []
    assert [n.text for n in notices(plan)] == ["No persona called 'skeptik'; did you mean The Skeptic (@skeptic)?"]
    # The first word of a question is not a name: the best match answers, as before.
    assert len(replies(await fleet.handle(cmd("ask", "should I quit my job?")))) == 1
    assert replies(await fleet.handle(cmd("ask", "nerd what is 2+2?", author=BOB))) == ["nerd"]


async def test_mute_of_a_persona_that_does_not_exist_names_the_closest() -> None:
    fleet, _, _ = make_fleet([NERD, SKEPTIC])
    plan = await fleet.handle(cmd("mute", "nerds", author=Author("u9", "mod", is_admin=True)))
    assert [n.text for n in notices(plan)] == ["No persona called 'nerds'; did you mean The Nerd (@nerd)?"]
