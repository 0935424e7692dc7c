import itertools
from collections.abc import AsyncIterator

from bots.core.events import Author, Command, React, Reply
from bots.core.ports import Chunk, LLMError, LLMRequest
from tests.conftest import HUMAN, make_fleet, msg, persona

BOB = Author(id="u2", name="bob")
ADMIN = Author(id="u9", name="mod", is_admin=True)


def replies(plan) -> list[str]:
    return [a.persona_id for a in plan.actions if isinstance(a, Reply)]


def skips(plan) -> dict[str, str]:
    return {d.persona_id: d.reason for d in plan.decisions if d.action == "skip"}


def cmd(name: str, args: str = "", author: Author = HUMAN, **kw) -> Command:
    msg.counter += 1
    return Command("test", f"c{msg.counter}", "general", author, name, args, **kw)


async def test_at_most_max_responders_answer_mentions_first() -> None:
    ps = [persona(p, triggers=[{"mention": True}, {"keywords": ["plan"]}]) for p in ("a", "b", "c", "d")]
    fleet, _, _ = make_fleet(ps, max_responders=2)
    plan = await fleet.handle(msg("c and d, what about my plan?"))
    assert sorted(replies(plan)) == ["c", "d"]
    assert set(skips(plan).values()) == {"max_responders"}


async def test_channel_per_minute_caps_all_personas_together() -> None:
    ps = [persona(p, triggers=[{"keywords": ["hi"]}]) for p in ("a", "b", "c")]
    fleet, _, clock = make_fleet(ps, max_responders=3, channel_per_minute=4)
    first = await fleet.handle(msg("hi"))
    second = await fleet.handle(msg("hi"))
    assert len(replies(first)) + len(replies(second)) == 4
    assert any(r.startswith("channel_per_minute (retry in") for r in skips(second).values())
    other_channel = await fleet.handle(msg("hi", channel="elsewhere"))
    assert len(replies(other_channel)) == 3
    clock.advance(60)
    assert len(replies(await fleet.handle(msg("hi")))) == 3


async def test_each_persona_limit_blocks_with_its_name() -> None:
    cases = {
        "per_minute": {"per_minute": 1},
        "per_channel_per_minute": {"per_channel_per_minute": 1},
        "per_user_per_minute": {"per_user_per_minute": 1},
        "cooldown": {"cooldown_seconds": 30},
    }
    for label, limits in cases.items():
        fleet, _, clock = make_fleet([persona("a", triggers=[{"keywords": ["x"]}], limits=limits)])
        assert replies(await fleet.handle(msg("x"))) == ["a"]
        clock.advance(1)
        blocked = await fleet.handle(msg("x"))
        assert replies(blocked) == []
        assert skips(blocked)["a"].startswith(label), (label, skips(blocked))
        if label == "per_user_per_minute":
            assert replies(await fleet.handle(msg("x", author=BOB))) == ["a"]
        if label == "per_channel_per_minute":
            assert replies(await fleet.handle(msg("x", channel="other"))) == ["a"]


async def test_cooldown_ends() -> None:
    fleet, _, clock = make_fleet([persona("a", triggers=[{"keywords": ["x"]}], limits={"cooldown_seconds": 30})])
    assert replies(await fleet.handle(msg("x")))
    clock.advance(29)
    assert not replies(await fleet.handle(msg("x")))
    clock.advance(1)
    assert replies(await fleet.handle(msg("x")))


async def test_a_persona_never_answers_itself_and_chains_stop_at_max_bot_chain() -> None:
    ps = [persona("a", triggers=[{"chance": 1.0}]), persona("b", triggers=[{"chance": 1.0}])]
    fleet, _, _ = make_fleet(ps, max_bot_chain=1, max_responders=5)
    from_a = lambda chain: Author(id="persona:a", name="A", is_bot=True, persona_id="a")  # noqa: E731
    plan = await fleet.handle(msg("hello", author=from_a(0), chain=0))
    assert replies(plan) == ["b"] and skips(plan)["a"] == "self"
    assert plan.actions[0].chain == 1
    plan = await fleet.handle(msg("hello again", author=from_a(1), chain=1))
    assert replies(plan) == []
    assert skips(plan)["b"].startswith("chain_depth")


async def test_persona_to_persona_exchange_ends_after_max_bot_chain_replies() -> None:
    ps = [persona("a", triggers=[{"mention": True}]), persona("b", triggers=[{"mention": True}])]

    class Ping:
        name = "ping"

        async def stream(self, request: LLMRequest) -> AsyncIterator[Chunk]:
            me = request.messages[0]["content"].split("You are ")[1][0].lower()
            yield Chunk(text=f"what do you think, {'b' if me == 'a' else 'a'}?", finish_reason="stop")

        async def close(self) -> None:
            return None

    fleet, adapter, _ = make_fleet(ps, llm=Ping(), max_bot_chain=2)
    await fleet.dispatch(msg("a, start"))
    await fleet.drain()
    # a answers the human, then b and a answer each other twice, then it stops.
    assert [r.persona_id for r, _ in adapter.replies] == ["a", "b", "a"]
    assert [r.chain for r, _ in adapter.replies] == [0, 1, 2]


async def test_foreign_bots_are_ignored() -> None:
    fleet, _, _ = make_fleet([persona("a", triggers=[{"chance": 1.0}])])
    plan = await fleet.handle(msg("beep", author=Author(id="x", name="OtherBot", is_bot=True)))
    assert plan.note == "foreign_bot" and not plan.actions


async def test_duplicates_are_handled_once() -> None:
    fleet, _, _ = make_fleet([persona("a", triggers=[{"chance": 1.0}])])
    m = msg("hi")
    assert replies(await fleet.handle(m)) == ["a"]
    again = await fleet.handle(m)
    assert again.note == "duplicate" and not again.actions


async def test_opted_out_users_get_no_reply_no_reaction_and_nothing_stored() -> None:
    ps = [persona("a", triggers=[{"chance": 1.0}], reactions=[{"keywords": ["wow"], "emoji": "🔥"}])]
    fleet, _, _ = make_fleet(ps)
    await fleet.handle(msg("first wow"))
    await fleet.handle(cmd("optout"))
    plan = await fleet.handle(msg("wow secret"))
    assert plan.note == "opted_out" and not plan.actions
    texts = [t.text for t in await fleet.store.history("test:general", 50)]
    assert "wow secret" not in texts and "first wow" in texts
    assert (await fleet.handle(cmd("ask", "a are you there?"))).note == "opted_out"
    await fleet.handle(cmd("optin"))
    assert replies(await fleet.handle(msg("wow back"))) == ["a"]


async def test_forget_deletes_that_users_messages_everywhere() -> None:
    fleet, _, _ = make_fleet([persona("a", triggers=[])])
    await fleet.handle(msg("mine", channel="one"))
    await fleet.handle(msg("mine too", channel="two"))
    await fleet.handle(msg("bob's", author=BOB, channel="one"))
    plan = await fleet.handle(cmd("forget"))
    assert "Deleted 2" in plan.actions[0].text and plan.actions[0].private
    assert [t.text for t in await fleet.store.history("test:one", 50)] == ["bob's"]
    assert await fleet.store.history("test:two", 50) == []


async def test_mute_needs_an_admin_and_silences_in_that_channel_only() -> None:
    fleet, _, _ = make_fleet([persona("a", triggers=[{"keywords": ["x"]}])])
    refused = await fleet.handle(cmd("mute", "a"))
    assert "Only admins" in refused.actions[0].text
    await fleet.handle(cmd("mute", "a", author=ADMIN))
    plan = await fleet.handle(msg("x"))
    assert skips(plan) == {"a": "muted"}
    assert replies(await fleet.handle(msg("x", channel="other"))) == ["a"]
    await fleet.handle(cmd("unmute", "a", author=ADMIN))
    assert replies(await fleet.handle(msg("x", author=BOB))) == ["a"]


async def test_channel_allow_and_deny_lists() -> None:
    ps = [
        persona("a", triggers=[{"keywords": ["x"]}], channels={"allow": ["fun"]}),
        persona("b", triggers=[{"keywords": ["x"]}], channels={"deny": ["serious"]}),
    ]
    fleet, _, _ = make_fleet(ps)
    assert sorted(replies(await fleet.handle(msg("x", channel="fun")))) == ["a", "b"]
    plan = await fleet.handle(msg("x", channel="serious"))
    assert replies(plan) == [] and skips(plan) == {"a": "channel_denied", "b": "channel_denied"}


async def test_reactions_follow_channel_rules_but_not_reply_limits() -> None:
    p = persona("a", triggers=[], reactions=[{"keywords": ["scam"], "emoji": "🤨"}], limits={"per_minute": 1})
    fleet, _, _ = make_fleet([p])
    for _ in range(3):
        plan = await fleet.handle(msg("a scam"))
        assert [a.emoji for a in plan.actions if isinstance(a, React)] == ["🤨"]
    await fleet.handle(cmd("mute", "a", author=ADMIN))
    assert not (await fleet.handle(msg("a scam"))).actions


async def test_replies_are_staggered_within_the_delay_range() -> None:
    ps = [persona(p, triggers=[{"keywords": ["x"]}]) for p in ("a", "b", "c")]
    fleet, _, _ = make_fleet(ps, reply_delay_seconds=[1, 3])
    delays = [a.delay for a in (await fleet.handle(msg("x"))).actions]
    assert len(delays) == 3 and delays == sorted(delays)
    gaps = [delays[0]] + [b - a for a, b in itertools.pairwise(delays)]
    assert all(1 <= g <= 3 for g in gaps)


async def test_ask_named_persona_and_best_match() -> None:
    ps = [
        persona("skeptic", triggers=[{"command": True}, {"keywords": ["invest"]}]),
        persona("supporter", triggers=[{"command": True}, {"keywords": ["dream"]}]),
        persona("hidden", triggers=[{"mention": True}]),
    ]
    fleet, _, _ = make_fleet(ps)
    plan = await fleet.handle(cmd("ask", "supporter should I invest?"))
    assert replies(plan) == ["supporter"]
    assert "should I invest?" in plan.actions[0].instruction
    assert replies(await fleet.handle(cmd("ask", "should I invest?", author=BOB))) == ["skeptic"]
    refused = await fleet.handle(cmd("ask", "hidden hello"))
    assert replies(refused) == [] and "can't be asked" in refused.actions[0].text


async def test_panel_picks_3_to_5_command_personas_each_told_the_other_angles() -> None:
    ps = [persona(f"p{i}", bio=f"outlook {i}", triggers=[{"command": True}]) for i in range(7)]
    ps.append(persona("quiet", triggers=[{"mention": True}]))
    fleet, _, _ = make_fleet(ps)
    plan = await fleet.handle(cmd("panel", "should I move abroad?"))
    chosen = replies(plan)
    assert 3 <= len(chosen) <= 5 and "quiet" not in chosen and len(set(chosen)) == len(chosen)
    for action in plan.actions:
        others = [p for p in chosen if p != action.persona_id]
        assert all(fleet.personas[o].name in action.instruction for o in others)
        assert "should I move abroad?" in action.instruction


async def test_personas_and_about_commands() -> None:
    fleet, _, _ = make_fleet([persona("a", bio="Says hi."), persona("b", sponsor="Acme", bio="Sells.")])
    listing = (await fleet.handle(cmd("personas"))).actions[0].text
    assert "A (a): Says hi." in listing and "Acme" in listing
    about = (await fleet.handle(cmd("about"))).actions[0].text
    assert "AI personas" in about and "/optout" in about and "/forget" in about


async def test_sponsored_persona_discloses_in_every_reply() -> None:
    fleet, adapter, _ = make_fleet([persona("brand", sponsor="Acme Gear", triggers=[{"keywords": ["tent"]}])])
    for n in range(2):
        await fleet.dispatch(msg("which tent?", author=Author(id=f"u{n}", name="x")))
        await fleet.drain()
    assert len(adapter.replies) == 2
    assert all(text.endswith("— AI persona for Acme Gear") for _, text in adapter.replies)


class Failing:
    name = "failing"

    def __init__(self, exc: Exception | None = None, partial: bool = False):
        self.exc = exc
        self.partial = partial

    async def stream(self, request: LLMRequest) -> AsyncIterator[Chunk]:
        if self.partial:
            yield Chunk(text="half a thou")
            return
        raise self.exc or LLMError("http_500")
        yield Chunk()

    async def close(self) -> None:
        return None


async def test_a_failed_llm_call_drops_only_that_reply() -> None:
    fleet, adapter, _ = make_fleet([persona("a", triggers=[{"keywords": ["x"]}])], llm=Failing())
    await fleet.dispatch(msg("x"))
    await fleet.drain()
    assert adapter.replies == []
    fleet.brain.client = Failing(partial=True)
    await fleet.dispatch(msg("x", channel="two"))
    await fleet.drain()
    assert adapter.cut_off == ["half a thou"] and adapter.replies == []


async def test_model_output_is_sanitised_before_the_adapter_sees_it() -> None:
    class Rude:
        name = "rude"

        async def stream(self, request: LLMRequest) -> AsyncIterator[Chunk]:
            yield Chunk(text="@every")
            yield Chunk(text="one look <@&123> <@456>", finish_reason="stop")

        async def close(self) -> None:
            return None

    fleet, adapter, _ = make_fleet([persona("a", triggers=[{"keywords": ["x"]}])], llm=Rude())
    await fleet.dispatch(msg("x"))
    await fleet.drain()
    text = adapter.replies[0][1]
    assert "@everyone" not in text and "<@" not in text
