"""Feed mode: a person posts, and their AI followers comment, each in its own voice, over a minute.

A post in a feed channel (a Discord forum thread, a Telegram channel post's copy in its discussion
group, `/post` on the console) does not go through trigger routing: it gets a cascade of
`comments` replies from the poster's followers, the first within seconds and the rest spread over
`window_seconds`. Each comment is written when its turn comes, so its prompt holds the comments
already made (they are in the thread's history) and it is asked to take another angle. Followers
who do not comment may leave a reaction, the feed's "like".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bots.config import FeedConfig
from bots.core.events import Command, Message, Notice, React
from bots.core.gate import Candidate, Where
from bots.core.plan import Decision, Plan
from bots.core.ports import Turn
from bots.core.prompts import COMMENT, MORE_COMMENT
from bots.persona import Persona

if TYPE_CHECKING:
    from bots.core.fleet import Fleet

LIKE = "👍"
MIN_FOLLOWERS = 3
MORE = 2


def like_emoji(p: Persona) -> str:
    # A persona's own reaction emoji says "like" in its voice; Telegram accepts 👍 from any bot.
    return p.reactions[0].emoji if p.reactions else LIKE


async def follower_pool(fleet: Fleet, feed: FeedConfig | None, platform: str, user_id: str) -> list[Persona]:
    chosen = await fleet.store.followers(platform, user_id)
    if chosen:
        ids: tuple[str, ...] = chosen
    elif feed is None or feed.personas == "all":
        ids = tuple(fleet.personas)
    else:
        ids = feed.personas
    return [fleet.personas[i] for i in ids if i in fleet.personas]


def comment_delays(fleet: Fleet, n: int, window: float) -> list[float]:
    """The first comment within the fleet's reply delay, the rest spread over the window."""
    lo, hi = fleet.config.fleet.reply_delay_seconds
    first = fleet.rng.uniform(lo, min(hi, window) if window > lo else hi)
    rest = sorted(fleet.rng.uniform(first, max(first, window)) for _ in range(n - 1))
    return [first, *rest]


async def _open(fleet: Fleet, pool: list[Persona], where: Where) -> list[Persona]:
    """The followers that may speak in this channel at all (channel rules, mutes)."""
    muted = await fleet.gate.muted(where)
    return [p for p in pool if not fleet.gate.closed(p, where, muted)]


async def _choose(
    fleet: Fleet, plan: Plan, pool: list[Persona], text: str, where: Where, n: int, now: float
) -> list[Candidate]:
    """Up to n personas from pool, most relevant to text first (ties at random), through the gate."""
    gate, index = fleet.gate, fleet.index
    # Over budget or with the LLM resting, a persona must not take a comment slot it cannot fill.
    awake = [p for p in pool if not gate.quiet(p, where.platform, where.user, now)]
    order = index.rank(text, [index.by_id[p.id] for p in awake], fleet.rng)
    ranked = [Candidate(index.personas[i], "") for i in order]
    scratch = Plan(plan.event)
    granted = await gate.limit(scratch, where, ranked, n, now)
    # Followers left out because enough were chosen are "not chosen", not limited: plan_post says so.
    plan.decisions.extend(d for d in scratch.decisions if d.reason != "max_responders")
    return granted


def _comment(
    fleet: Fleet,
    plan: Plan,
    commenters: list[Candidate],
    event: Message | Command,
    reply_to: str,
    reason: str,
    instruction: str,
    window: float,
) -> None:
    """Plan one comment per persona, staggered over the window and written in turn (one queue)."""
    where = Where.of(event, event.author.id)
    delays = comment_delays(fleet, len(commenters), window) if commenters else []
    for c, delay in zip(commenters, delays, strict=True):
        fleet.gate.reply(
            plan,
            where,
            c,
            delay=delay,
            reply_to=reply_to,
            reason=reason,
            root=event.key,
            instruction=instruction.format(author=event.author.name),
            queue=event.key,
        )


async def plan_post(fleet: Fleet, msg: Message, plan: Plan, now: float, feed: FeedConfig) -> None:
    where = Where.of(msg, msg.author.id)
    pool = await _open(fleet, await follower_pool(fleet, feed, msg.platform, msg.author.id), where)
    commenters = await _choose(fleet, plan, pool, msg.text, where, feed.comments, now)
    _comment(fleet, plan, commenters, msg, msg.id, "feed:post", COMMENT, feed.window_seconds)
    speaking = {c.persona.id for c in commenters}
    limited = {d.persona_id for d in plan.decisions}
    for p in pool:
        if p.id in speaking:
            continue
        if feed.reactions and fleet.rng.random() < 0.5:
            plan.decisions.append(Decision(p.id, "react", "feed:like"))
            plan.actions.append(React(p.id, msg.platform, msg.channel, msg.id, like_emoji(p), reason="feed:like"))
        elif p.id not in limited:
            plan.decisions.append(Decision(p.id, "skip", "feed:not_chosen"))


def _notice(cmd: Command, text: str, private: bool = True) -> Notice:
    return Notice(cmd.platform, cmd.channel, text, reply_to=cmd.id, private=private, to_user=cmd.author.id,
                  command_id=cmd.id)  # fmt: skip


async def more(fleet: Fleet, cmd: Command, plan: Plan, now: float) -> None:
    """`/more` in a post's thread: two followers who have not spoken there yet comment."""
    feed = fleet.config.feeds.find(cmd.platform, (cmd.channel, cmd.channel_name, cmd.parent_channel or ""))
    if feed is None:
        plan.actions.append(_notice(cmd, "/more works in a feed post's thread."))
        return
    history = await fleet.store.history(cmd.conversation, fleet.config.fleet.history_size)
    post = next((t for t in history if t.user_id), None)
    if post is None:
        # No post here (yet, or no longer stored): followers would comment on nothing at all.
        plan.actions.append(_notice(cmd, "Nothing to comment on here yet: /more works in a feed post's thread."))
        return
    where = Where.of(cmd, cmd.author.id)
    pool = await _open(fleet, await follower_pool(fleet, feed, cmd.platform, cmd.author.id), where)
    chosen = await _choose(fleet, plan, _unheard(pool, history), post.text, where, MORE, now)
    if not chosen:
        plan.actions.append(_notice(cmd, "Every follower has had their say here (or is resting)."))
        return
    reply_to = post.message_id or cmd.id
    _comment(fleet, plan, chosen, cmd, reply_to, "feed:more", MORE_COMMENT, feed.window_seconds / 2)


def _unheard(pool: list[Persona], history: list[Turn]) -> list[Persona]:
    spoken = {t.persona_id for t in history if t.persona_id}
    return [p for p in pool if p.id not in spoken]


async def followers(fleet: Fleet, cmd: Command, plan: Plan, now: float) -> None:
    """`/followers` shows who follows you; `/followers a b c` chooses (at least 3); `reset` goes back."""
    args = cmd.args.replace(",", " ").split()
    if args == ["reset"]:
        await fleet.store.set_followers(cmd.platform, cmd.author.id, None)
        plan.actions.append(_notice(cmd, "Your followers are the channel's default set again."))
    elif args:
        plan.actions.append(_notice(cmd, await _set_followers(fleet, cmd, args)))
    else:
        plan.actions.append(_notice(cmd, await _show_followers(fleet, cmd)))


async def _set_followers(fleet: Fleet, cmd: Command, args: list[str]) -> str:
    chosen: list[str] = []
    unknown: list[str] = []
    for name in args:
        p = fleet.find_persona(name)
        if p is None:
            unknown.append(name)
        elif p.id not in chosen:
            chosen.append(p.id)
    if unknown or len(chosen) < MIN_FOLLOWERS:
        problem = f"unknown: {', '.join(unknown)}. " if unknown else ""
        return (
            f"{problem}Choose at least {MIN_FOLLOWERS} different personas, e.g. /followers "
            f"{' '.join(list(fleet.personas)[:3])}. Available: {', '.join(fleet.personas)}."
        )
    await fleet.store.set_followers(cmd.platform, cmd.author.id, tuple(chosen))
    return f"Your posts will get comments from: {', '.join(fleet.personas[i].name for i in chosen)}."


async def _show_followers(fleet: Fleet, cmd: Command) -> str:
    feed = fleet.config.feeds.find(cmd.platform, (cmd.channel, cmd.channel_name, cmd.parent_channel or ""))
    chosen_now = await fleet.store.followers(cmd.platform, cmd.author.id)
    pool = await follower_pool(fleet, feed, cmd.platform, cmd.author.id)
    source = "your choice" if chosen_now else "the channel's default set"
    lines = [f"• {p.name} ({p.id}): {p.display_bio}" for p in pool]
    return (
        f"Your AI followers ({source}):\n" + "\n".join(lines) + "\n"
        f"Choose yours with /followers <id> <id> <id> (at least {MIN_FOLLOWERS}); /followers reset for the "
        f"default. All personas: {', '.join(fleet.personas)}."
    )
