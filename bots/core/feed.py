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
from bots.core.events import Command, Message, Notice, React, Reply
from bots.core.gate import channel_allowed
from bots.core.plan import Decision, Plan
from bots.persona import Persona

if TYPE_CHECKING:
    from bots.core.fleet import Fleet

LIKE = "👍"
MIN_FOLLOWERS = 3
MORE = 2

COMMENT = (
    "{author} just posted this to a feed where AI personas follow people and comment on their posts, "
    "the way followers do on a social app. Write one short comment (1-3 sentences) from your own outlook. "
    "Comments other followers already made are above: take a different angle, do not repeat them."
)
MORE_COMMENT = (
    "{author} asked for more perspectives on their post. Comments already made are above: add an angle "
    "nobody has taken yet, in 1-3 sentences."
)


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
        ids = feed.personas  # type: ignore[assignment]
    return [fleet.personas[i] for i in ids if i in fleet.personas]


def comment_delays(fleet: Fleet, n: int, window: float) -> list[float]:
    """The first comment within the fleet's reply delay, the rest spread over the window."""
    lo, hi = fleet.config.fleet.reply_delay_seconds
    first = fleet.rng.uniform(lo, min(hi, window) if window > lo else hi)
    rest = sorted(fleet.rng.uniform(first, max(first, window)) for _ in range(n - 1))
    return [first, *rest]


async def _usable(fleet: Fleet, pool: list[Persona], event: Message | Command, names: tuple[str, ...]) -> list[Persona]:
    muted = await fleet.muted_in(event.platform, event.channel, event.parent_channel)
    return [p for p in pool if p.id not in muted and channel_allowed(p, names)]


def _awake(fleet: Fleet, pool: list[Persona], platform: str, user: str, now: float) -> list[Persona]:
    # Over budget or with the LLM resting, a persona must not take a comment slot it cannot fill.
    return [p for p in pool if not fleet.quiet(p, platform, user, now)]


async def _choose(
    fleet: Fleet, pool: list[Persona], text: str, platform: str, conversation: str, user: str, n: int, now: float
) -> list[Persona]:
    """Up to n personas from pool, most relevant to text first (ties at random), within their limits."""
    index = fleet.index
    pool = _awake(fleet, pool, platform, user, now)
    order = index.rank(text, [index.by_id[p.id] for p in pool], fleet.rng)
    ranked = [index.personas[i] for i in order]
    verdicts = await fleet.limiter.acquire([fleet.rates(p, platform, conversation, user) for p in ranked], n, now)
    return [p for p, v in zip(ranked, verdicts, strict=True) if v.allowed]


def _comment(
    fleet: Fleet,
    plan: Plan,
    commenters: list[Persona],
    event: Message | Command,
    reply_to: str,
    reason: str,
    instruction: str,
    window: float,
) -> None:
    """Plan one comment per persona, staggered over the window and written in turn (one queue)."""
    delays = comment_delays(fleet, len(commenters), window) if commenters else []
    for p, delay in zip(commenters, delays, strict=True):
        plan.decisions.append(Decision(p.id, "reply", reason))
        plan.actions.append(
            Reply(
                persona_id=p.id,
                platform=event.platform,
                channel=event.channel,
                reply_to=reply_to,
                reason=reason,
                delay=delay,
                to_user=event.author.id,
                instruction=instruction.format(author=event.author.name),
                footer=fleet.footer(p),
                queue=event.key,
            )
        )


async def plan_post(fleet: Fleet, msg: Message, plan: Plan, now: float, feed: FeedConfig) -> None:
    names = (msg.channel, msg.channel_name, msg.parent_channel or "")
    pool = await _usable(fleet, await follower_pool(fleet, feed, msg.platform, msg.author.id), msg, names)
    commenters = await _choose(fleet, pool, msg.text, msg.platform, msg.conversation, msg.author.id, feed.comments, now)
    _comment(fleet, plan, commenters, msg, msg.id, "feed:post", COMMENT, feed.window_seconds)
    speaking = {p.id for p in commenters}
    for p in pool:
        if p.id in speaking:
            continue
        if feed.reactions and fleet.rng.random() < 0.5:
            plan.decisions.append(Decision(p.id, "react", "feed:like"))
            plan.actions.append(React(p.id, msg.platform, msg.channel, msg.id, like_emoji(p), reason="feed:like"))
        else:
            plan.decisions.append(Decision(p.id, "skip", "feed:not_chosen"))


def _notice(cmd: Command, text: str, private: bool = True) -> Notice:
    return Notice(cmd.platform, cmd.channel, text, reply_to=cmd.id, private=private, to_user=cmd.author.id,
                  command_id=cmd.id)  # fmt: skip


async def more(fleet: Fleet, cmd: Command, plan: Plan, now: float) -> None:
    """`/more` in a post's thread: two followers who have not spoken there yet comment."""

    names = (cmd.channel, cmd.channel_name, cmd.parent_channel or "")
    feed = fleet.config.feeds.find(cmd.platform, names)
    if feed is None:
        plan.actions.append(_notice(cmd, "/more works in a feed post's thread."))
        return
    history = await fleet.store.history(cmd.conversation, fleet.config.fleet.history_size)
    spoken = {t.persona_id for t in history if t.persona_id}
    pool = await _usable(fleet, await follower_pool(fleet, feed, cmd.platform, cmd.author.id), cmd, names)
    pool = [p for p in pool if p.id not in spoken]
    post = next((t for t in history if t.user_id), None)
    chosen = await _choose(
        fleet, pool, post.text if post else "", cmd.platform, cmd.conversation, cmd.author.id, MORE, now
    )
    if not chosen:
        plan.actions.append(_notice(cmd, "Every follower has had their say here (or is resting)."))
        return
    reply_to = post.message_id if post and post.message_id else cmd.id
    _comment(fleet, plan, chosen, cmd, reply_to, "feed:more", MORE_COMMENT, feed.window_seconds / 2)


async def followers(fleet: Fleet, cmd: Command, plan: Plan, now: float) -> None:
    """`/followers` shows who follows you; `/followers a b c` chooses (at least 3); `reset` goes back."""
    args = cmd.args.replace(",", " ").split()
    names = (cmd.channel, cmd.channel_name, cmd.parent_channel or "")
    feed = fleet.config.feeds.find(cmd.platform, names)
    if args == ["reset"]:
        await fleet.store.set_followers(cmd.platform, cmd.author.id, None)
        plan.actions.append(_notice(cmd, "Your followers are the channel's default set again."))
        return
    if args:
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
            plan.actions.append(
                _notice(
                    cmd,
                    f"{problem}Choose at least {MIN_FOLLOWERS} different personas, e.g. /followers "
                    f"{' '.join(list(fleet.personas)[:3])}. Available: {', '.join(fleet.personas)}.",
                )
            )
            return
        await fleet.store.set_followers(cmd.platform, cmd.author.id, tuple(chosen))
        names_text = ", ".join(fleet.personas[i].name for i in chosen)
        plan.actions.append(_notice(cmd, f"Your posts will get comments from: {names_text}."))
        return
    chosen_now = await fleet.store.followers(cmd.platform, cmd.author.id)
    pool = await follower_pool(fleet, feed, cmd.platform, cmd.author.id)
    source = "your choice" if chosen_now else "the channel's default set"
    lines = [f"• {p.name} ({p.id}): {p.display_bio}" for p in pool]
    plan.actions.append(
        _notice(
            cmd,
            f"Your AI followers ({source}):\n" + "\n".join(lines) + "\n"
            f"Choose yours with /followers <id> <id> <id> (at least {MIN_FOLLOWERS}); /followers reset for the "
            f"default. All personas: {', '.join(fleet.personas)}.",
        )
    )
