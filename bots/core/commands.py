"""Commands handled in the core, so every adapter gets them: /ask /panel /personas /about /optout
/optin /forget /mute /unmute /memory /link /help."""

from __future__ import annotations

import difflib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from bots.core.events import Command, Notice, Reply
from bots.core.feed import followers, more
from bots.core.gate import Candidate, Where, channel_allowed
from bots.core.memory import commands as memory_commands
from bots.core.plan import Decision, Plan
from bots.core.ports import Turn
from bots.core.prompts import ask_instruction, panel_instruction
from bots.persona import Persona

if TYPE_CHECKING:
    from bots.core.fleet import Fleet


Handler = Callable[["Fleet", Command, Plan, float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Option:
    """A slash-command option; "persona" options complete persona names, "personas" several ids."""

    name: str
    description: str
    kind: Literal["text", "persona", "personas"] = "text"
    required: bool = True


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """Everything about one command, in one place: adapters build slash commands, menus and /help
    from these, and the fleet reads who may run it."""

    name: str
    help: str
    handler: Handler
    options: tuple[Option, ...] = ()
    # Answered only to the person who ran it (ephemeral on Discord).
    private: bool = False
    # Only channel admins may run it; for others it is private and refused.
    admin: bool = False
    # Someone who opted out may still run it: it makes no persona read or answer them.
    while_opted_out: bool = False
    # Offered in DMs and private chats (a channel mute or a feed thread makes no sense there).
    in_private_chats: bool = True


def _notice(cmd: Command, text: str, *, private: bool = False) -> Notice:
    return Notice(
        platform=cmd.platform,
        channel=cmd.channel,
        text=text,
        reply_to=cmd.reply_to_id or cmd.id,
        private=private,
        to_user=cmd.author.id,
        command_id=cmd.id,
    )


def about_text(fleet: Fleet) -> str:
    cfg = fleet.config
    kept = f"for {cfg.retention_days} days (at most the last {cfg.fleet.history_size} per channel)"
    contact = f" Contact: {cfg.about.contact}." if cfg.about.contact else ""
    sponsors = sorted(f"{p.name} ({p.sponsor})" for p in fleet.personas.values() if p.sponsor)
    sponsored = (
        f" Personas marked as sponsored speak for a brand and say so in every reply: {', '.join(sponsors)}."
        if sponsors
        else ""
    )
    return (
        "These are AI personas: every reply is written by a language model playing a character, "
        f"not by a person.{sponsored} They are run by {cfg.about.operator}.{contact} "
        f"To hold a conversation they keep recent channel messages {kept}; older ones are deleted. "
        "They also note when each persona first told you it is an AI, and count the tokens spent "
        "answering you per day (numbers, no text) for cost limits. "
        "/optout: they never answer, react to or store your messages. /optin: undo it. "
        "/forget: delete at once what is stored of your messages. /personas: who is here."
        + memory_commands.memory_about(fleet)
    )


async def run_command(fleet: Fleet, cmd: Command, plan: Plan, now: float) -> None:
    spec = COMMANDS.get(cmd.name)
    if spec is None:
        # Silence would leave a typo looking like a fleet that is not listening.
        plan.actions.append(_notice(cmd, unknown_command_text(cmd.name), private=True))
        return
    await spec.handler(fleet, cmd, plan, now)


def closest_command(name: str) -> str | None:
    """The command a typo most likely meant, if any is close."""
    close = difflib.get_close_matches(name.lower(), list(COMMANDS), n=1, cutoff=CLOSE)
    return close[0] if close else None


def unknown_command_text(name: str) -> str:
    close = closest_command(name)
    hint = f"did you mean /{close}?" if close else "/help lists the commands."
    return f"Unknown command /{name}; {hint}"


# How alike two names must be (difflib ratio) to count as a typo of one another: "pannel" is /panel
# (0.91) and "skeptik" the skeptic (0.86), while "stoicism" (0.77 to stoic) stays a word of a question.
CLOSE = 0.8


def _persona_names(fleet: Fleet) -> dict[str, Persona]:
    """Every spelling find_persona accepts, lower case, to the persona."""
    names: dict[str, Persona] = {}
    for p in fleet.personas.values():
        full = p.name.lower()
        for name in (p.id, full, full.removeprefix("the "), full.replace(" ", ""), full.replace(" ", "_")):
            names[name] = p
    return names


def no_such_persona(fleet: Fleet, word: str) -> str:
    """The error for a persona name that is not one, with the closest persona if any is close."""
    names = _persona_names(fleet)
    close = difflib.get_close_matches(word.lstrip("@").lower(), list(names), n=1, cutoff=0.6)
    hint = f"did you mean {names[close[0]].name} (@{names[close[0]].id})?" if close else "/personas lists them."
    return f"No persona called '{word.lstrip('@')}'; {hint}"


def _ask_target(fleet: Fleet, cmd: Command) -> tuple[Persona | None, str, str]:
    """The persona asked, if one was named (an option, or the first word), the question, and the word
    that looked like a persona's name but is none ("" if none did)."""
    args = cmd.args.strip()
    if cmd.persona:
        return fleet.find_persona(cmd.persona), args, ""
    first, _, rest = args.partition(" ")
    found = fleet.find_persona(first) if args else None
    if found is not None and rest.strip():
        return found, rest.strip(), ""
    # "/ask should I quit?" asks the best match; "/ask @nobody ..." or "/ask skeptik ..." named someone.
    named = first.startswith("@") or bool(
        difflib.get_close_matches(first.lower(), list(_persona_names(fleet)), n=1, cutoff=CLOSE)
    )
    return None, args, first if found is None and rest.strip() and named else ""


async def _ask(fleet: Fleet, cmd: Command, plan: Plan, now: float) -> None:
    persona, args, unknown = _ask_target(fleet, cmd)
    if unknown:
        plan.actions.append(_notice(cmd, no_such_persona(fleet, unknown), private=True))
        return
    if not args:
        plan.actions.append(_notice(cmd, "Usage: /ask [persona] <question>", private=True))
        return
    if persona is not None and not (persona.has("command") and _usable(fleet, persona, cmd)):
        plan.decisions.append(Decision(persona.id, "skip", "not available here"))
        plan.actions.append(_notice(cmd, f"{persona.name} can't be asked here.", private=True))
        return
    # An explicit choice waits for its own limits; "the best match" falls through to the next one.
    ranked = (
        [fleet.index.by_id[persona.id]] if persona is not None else fleet.index.rank(args, _pool(fleet, cmd), fleet.rng)
    )
    if not ranked:
        plan.actions.append(_notice(cmd, "No persona takes questions here.", private=True))
        return
    await _record_question(fleet, cmd, args, now)
    if not await _summon(fleet, cmd, plan, now, ranked, 1, args, []):
        who = persona.name if persona else "Everyone"
        plan.actions.append(_notice(cmd, f"{who} is resting (rate or budget limit); try again later.", private=True))
    elif persona is None and _maybe_a_name(args):
        # "/ask nobody what?": the first word may have been meant as a name; say who answers instead.
        chosen = next(fleet.personas[a.persona_id].name for a in plan.actions if isinstance(a, Reply))
        first = args.split()[0]
        text = f"No persona called {first!r}, so the best match answers: {chosen}. /personas lists them."
        plan.actions.append(_notice(cmd, text, private=True))


# Words a question starts with; any other first word of a bare /ask may have been meant as a name.
QUESTION_OPENERS = frozenset(
    "should shall what how is are am was were can could do does did why when where who whom whose which would "
    "will i i'm im my me we our you your it its if any anyone anybody someone somebody tell help please hey hi "
    "hello ok so but and or the a an this that these those there here".split()
)


def _maybe_a_name(question: str) -> bool:
    words = question.split()
    return len(words) >= 2 and words[0].lower().strip("?!.,:;'\"") not in QUESTION_OPENERS


async def _panel(fleet: Fleet, cmd: Command, plan: Plan, now: float) -> None:
    question = cmd.args.strip()
    if not question:
        plan.actions.append(_notice(cmd, "Usage: /panel <question>", private=True))
        return
    pool = _pool(fleet, cmd)
    if not pool:
        plan.actions.append(_notice(cmd, "No persona takes questions here.", private=True))
        return
    lo, hi = fleet.config.fleet.panel_size
    size = min(len(pool), fleet.rng.randint(lo, hi))
    ranked = fleet.index.rank(question, pool, fleet.rng)
    await _record_question(fleet, cmd, question, now)
    granted = await _summon(fleet, cmd, plan, now, ranked, size, question, ranked)
    if not granted:
        plan.actions.append(_notice(cmd, "The panel is resting (rate or budget limit); try again later.", private=True))


def _pool(fleet: Fleet, cmd: Command) -> list[int]:
    """The personas that take commands in this channel (index positions)."""
    return [i for i, p in enumerate(fleet.index.personas) if p.has("command") and _usable(fleet, p, cmd)]


def _usable(fleet: Fleet, p: Persona, cmd: Command) -> bool:
    return channel_allowed(p, (cmd.channel, cmd.channel_name, cmd.parent_channel or ""))


async def _record_question(fleet: Fleet, cmd: Command, question: str, now: float) -> None:
    await fleet.store.append(
        cmd.conversation,
        Turn(speaker=cmd.author.name, text=question, at=now, user_id=cmd.author.id, message_id=cmd.id),
    )


async def _summon(
    fleet: Fleet,
    cmd: Command,
    plan: Plan,
    now: float,
    ranked: list[int],
    size: int,
    question: str,
    panel_pool: list[int],
) -> int:
    """Up to size of the ranked personas answer, through the gate; a panel's answers share a queue,
    so each one is written with the ones before it in its prompt."""
    personas = fleet.index.personas
    where = Where.of(cmd, cmd.author.id)
    reason = "command:panel" if panel_pool else "command:ask"
    chosen = await fleet.gate.admit(plan, where, [Candidate(personas[i], reason) for i in ranked], size, now)
    for n, (c, delay) in enumerate(zip(chosen, fleet.gate.stagger(len(chosen)), strict=True)):
        if panel_pool:
            others = [o.persona for o in chosen if o is not c]
            instruction = panel_instruction(cmd.author.name, question, others)
            reason = f"command:panel#{n + 1}"
        else:
            instruction = ask_instruction(cmd.author.name, question)
        fleet.gate.reply(
            plan,
            where,
            c,
            delay=delay,
            reply_to=cmd.reply_to_id or cmd.id,
            reason=reason,
            root=cmd.key,
            instruction=instruction,
            queue=cmd.key if panel_pool else "",
        )
    return len(chosen)


async def _personas(fleet: Fleet, cmd: Command, plan: Plan, now: float) -> None:
    lines = [f"• {p.name} ({p.id}): {p.display_bio}" for p in fleet.personas.values()]
    plan.actions.append(_notice(cmd, "AI personas here:\n" + "\n".join(lines)))


async def _about(fleet: Fleet, cmd: Command, plan: Plan, now: float) -> None:
    plan.actions.append(_notice(cmd, about_text(fleet)))


async def _optout(fleet: Fleet, cmd: Command, plan: Plan, now: float) -> None:
    await fleet.store.set_opt_out(cmd.platform, cmd.author.id, True)
    await fleet.memory.forget(cmd.platform, cmd.author.id, unlink=True)
    plan.actions.append(
        _notice(
            cmd, "Done: the personas will not answer, react to or store your messages. /optin to undo.", private=True
        )
    )


async def _optin(fleet: Fleet, cmd: Command, plan: Plan, now: float) -> None:
    await fleet.store.set_opt_out(cmd.platform, cmd.author.id, False)
    plan.actions.append(_notice(cmd, "Welcome back: the personas may answer you again.", private=True))


async def _forget(fleet: Fleet, cmd: Command, plan: Plan, now: float) -> None:
    removed = await fleet.store.forget_user(cmd.platform, cmd.author.id)
    fleet.disclosure.forget(cmd.platform, cmd.author.id)
    fleet.safety.forget(cmd.platform, cmd.author.id)
    fleet.gallery.forget_user(cmd.platform, cmd.author.id)
    notes = await fleet.memory.forget(cmd.platform, cmd.author.id, unlink=True)
    also = f" and {notes} memory note(s)" if notes else ""
    plan.actions.append(_notice(cmd, f"Deleted {removed} stored message(s){also} of yours.", private=True))


async def _mute(fleet: Fleet, cmd: Command, plan: Plan, now: float, muted: bool = True) -> None:
    verb = "mute" if muted else "unmute"
    if not cmd.author.is_admin:
        plan.actions.append(_notice(cmd, f"Only admins can /{verb} personas here.", private=True))
        return
    target = (cmd.persona or cmd.args).strip()
    persona = fleet.find_persona(target) if target else None
    if persona is None:
        text = no_such_persona(fleet, target) if target else f"Usage: /{verb} <persona> (see /personas)"
        plan.actions.append(_notice(cmd, text, private=True))
        return
    await fleet.store.set_muted(cmd.conversation, persona.id, muted)
    state = "muted in this channel" if muted else "can speak here again"
    plan.actions.append(_notice(cmd, f"{persona.name} {state}."))


async def _unmute(fleet: Fleet, cmd: Command, plan: Plan, now: float) -> None:
    await _mute(fleet, cmd, plan, now, muted=False)


async def _help(fleet: Fleet, cmd: Command, plan: Plan, now: float) -> None:
    plan.actions.append(_notice(cmd, help_text(), private=True))


async def _followers(fleet: Fleet, cmd: Command, plan: Plan, now: float) -> None:
    await followers(fleet, cmd, plan, now)


async def _more(fleet: Fleet, cmd: Command, plan: Plan, now: float) -> None:
    await more(fleet, cmd, plan, now)


COMMANDS: dict[str, CommandSpec] = {
    spec.name: spec
    for spec in (
        CommandSpec(
            "ask",
            "Ask one persona: /ask [persona] <question>",
            _ask,
            options=(
                Option("question", "What to ask"),
                Option("persona", "Who to ask (default: the best match)", kind="persona", required=False),
            ),
        ),
        CommandSpec(
            "panel",
            "Ask a panel of 3-5 personas with different outlooks: /panel <question>",
            _panel,
            options=(Option("question", "What to ask the panel"),),
        ),
        CommandSpec("personas", "List the personas", _personas, while_opted_out=True),
        CommandSpec("about", "What these AI personas are and what is stored", _about, while_opted_out=True),
        CommandSpec(
            "optout",
            "The personas will never answer, react to or store your messages",
            _optout,
            private=True,
            while_opted_out=True,
        ),
        CommandSpec("optin", "Undo /optout", _optin, private=True, while_opted_out=True),
        CommandSpec("forget", "Delete your stored messages", _forget, private=True, while_opted_out=True),
        CommandSpec(
            "mute",
            "Silence a persona in this channel (admins): /mute <persona>",
            _mute,
            options=(Option("persona", "The persona to silence in this channel", kind="persona"),),
            admin=True,
            in_private_chats=False,
        ),
        CommandSpec(
            "unmute",
            "Let a muted persona speak again (admins): /unmute <persona>",
            _unmute,
            options=(Option("persona", "The persona to let speak again", kind="persona"),),
            admin=True,
            in_private_chats=False,
        ),
        CommandSpec(
            "followers",
            "See which personas comment on your feed posts, or choose them: /followers a b c",
            _followers,
            options=(
                Option("personas", "At least 3 persona ids, or reset; empty: show your followers", "personas", False),
            ),
            private=True,
            # Feeds are channels and forum threads; a DM has no posts for followers to comment on.
            in_private_chats=False,
        ),
        CommandSpec(
            "more", "In a feed post's thread: two more followers comment", _more, private=True, in_private_chats=False
        ),
        CommandSpec(
            "memory",
            "What each persona remembers about you, with dates: /memory, /memory forget <persona|all>",
            memory_commands.memory,
            options=(Option("action", "Empty: show; forget <persona|all>: erase", required=False),),
            private=True,
            # Erasing what is kept must work for someone who opted out too (nothing is read or answered).
            while_opted_out=True,
        ),
        CommandSpec(
            "link",
            "Let personas' memory of you follow you to another platform: /link, then /link CODE there",
            memory_commands.link,
            options=(Option("code", "The code /link gave you on your other account", required=False),),
            private=True,
        ),
        CommandSpec("help", "List the commands", _help, private=True, while_opted_out=True),
    )
}
# What someone who opted out can still do: nothing that makes a persona read or answer them.
OPTED_OUT_COMMANDS = frozenset(name for name, spec in COMMANDS.items() if spec.while_opted_out)


def help_text() -> str:
    return "\n".join(f"/{spec.name}: {spec.help}" for spec in COMMANDS.values())
