"""Carrying decisions out: write each reply (prompt -> LLM -> sanitised snapshots) and hand it to
its adapter, react, notify; then feed the fleet's own messages back as turns."""

from __future__ import annotations

import asyncio
import logging
import re
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, NoReturn

from bots.core.brain import IncompleteReply
from bots.core.events import Action, Author, Message, React, Reply, Sent
from bots.core.greeting import Greetings, addressee
from bots.core.ports import Adapter, LLMError, LLMRequest
from bots.core.safety.outgoing import ReplyGuard
from bots.core.text import sanitize
from bots.core.viewing import show_photos
from bots.persona import Persona

if TYPE_CHECKING:
    from bots.core.fleet import Fleet

log = logging.getLogger("botfleet.fleet")

# After shutdown_seconds, replies still streaming are cut; adapters get this long to mark them so.
CUT_GRACE = 2.0

# What snapshots() guards with when its caller has no reply of its own.
_NO_REPLY = Reply(persona_id="", platform="", channel="", reply_to=None, reason="")

# A speaker label a model may open with: "The Stoic:", "[The Skeptic]", "**Sage:**".
_LABEL = re.compile(r"\s*(?:\*\*)?(?:\[([^\]\n]{1,40})\]:?|([^:\[\]\n]{1,40}):)(?:\*\*)?\s*")


def unlabel(text: str, names: frozenset[str]) -> str:
    """text without the speaker labels it opens with ("The Optimist: The Stoic: ..."), as long as
    they name someone in names (lowercase, with and without a leading "the ")."""
    while m := _LABEL.match(text):
        label = (m.group(1) or m.group(2) or "").strip().strip("*").strip().lower()
        if label not in names and label.removeprefix("the ") not in names:
            break
        text = text[m.end() :]
    return text


def speaker_names(personas: Iterable[Persona]) -> frozenset[str]:
    names = {p.name.strip().lower() for p in personas}
    return frozenset(names | {n.removeprefix("the ") for n in names})


class Delivery:
    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        # Replies being written right now (a gauge for metrics).
        self.replying = 0
        self.cutting = False
        # Platform message id -> persona that wrote it, so adapters can turn "a reply to that message"
        # into a reply trigger for the right persona (webhook and host-bot messages included).
        self.authored: OrderedDict[str, str] = OrderedDict()
        # Reply queues by name; a lock lives only while replies of its queue are waiting or writing.
        self._queues: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self.greetings = Greetings()
        self._names: frozenset[str] = frozenset()
        self._names_of: object = None

    def _speaker_names(self) -> frozenset[str]:
        # Once per persona set, not per reply: at thousands of personas it costs a millisecond.
        personas = self.fleet.personas
        if self._names_of is not personas:
            self._names = speaker_names(personas.values())
            self._names_of = personas
        return self._names

    async def perform(self, action: Action) -> str:
        """Carry one action out and return its outcome, which also goes to the fleet's outcome
        listeners: sent, reacted, notified, dropped:<llm error kind>, cut_off, muted, gone (persona
        unloaded), failed (adapter error) or cancelled (shutdown, raised rather than returned)."""
        fleet = self.fleet
        adapter = fleet.adapters.get(action.platform)
        if adapter is None:
            log.warning("no %s adapter for %s", action.platform, type(action).__name__)
            return "failed"
        outcome = "failed"
        try:
            outcome = await self._carry_out(adapter, action)
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        except Exception:
            log.exception("%s by %s failed", type(action).__name__, getattr(action, "persona_id", "fleet"))
        finally:
            for listener in fleet.outcomes:
                listener(outcome, action)
        return outcome

    async def _carry_out(self, adapter: Adapter, action: Action) -> str:
        if isinstance(action, Reply):
            self.replying += 1
            try:
                return await self.reply(adapter, action)
            finally:
                self.replying -= 1
        if isinstance(action, React):
            persona = self.fleet.personas.get(action.persona_id)
            if persona is None:
                return "gone"
            await adapter.react(action, persona)
            return "reacted"
        await adapter.notify(action)
        return "notified"

    async def reply(self, adapter: Adapter, reply: Reply) -> str:
        outcome = await self._write_reply(adapter, reply)
        if outcome != "sent":
            self.fleet.disclosure.owe(reply, self.fleet.config.about.disclosure)
        return outcome

    async def _write_reply(self, adapter: Adapter, reply: Reply) -> str:
        persona = self.fleet.personas.get(reply.persona_id)
        if persona is None:
            return "gone"
        if reply.delay > 0:
            await self.fleet.sleep(reply.delay)
        if not reply.queue:
            return await self._compose(adapter, persona, reply)
        # Comments on one post (and the answers of one panel) are written one after another, so each
        # prompt already holds the ones before it, however close their delays or slow the model.
        lock = self._queues.get(reply.queue)
        if lock is None:
            lock = self._queues[reply.queue] = asyncio.Lock()
        async with lock:
            return await self._compose(adapter, persona, reply)

    async def _compose(self, adapter: Adapter, persona: Persona, reply: Reply) -> str:
        fleet = self.fleet
        conversation = f"{reply.platform}:{reply.channel}"
        if persona.id in await fleet.store.muted(conversation):
            return "muted"
        history = await fleet.store.history(conversation, fleet.config.llm.history_turns)
        memory = await fleet.memory.for_prompt(persona, reply)
        request = fleet.brain.request(persona, history, reply, memory=memory)
        request = await show_photos(fleet, adapter, persona, request, reply)
        guard = fleet.safety.guard(persona, reply)

        def greet() -> Awaitable[str]:
            return self.greetings.opening(fleet.store, persona, reply, addressee(fleet.audit, reply), fleet.clock())

        try:
            sent = await adapter.deliver(reply, persona, self.snapshots(persona, request, reply.footer, greet, guard))
        except LLMError as exc:
            log.warning("reply by %s dropped: %s", persona.id, exc.kind)
            return f"dropped:{exc.kind}"
        except IncompleteReply:
            log.warning("reply by %s cut off: the model stopped without finishing", persona.id)
            return "cut_off"
        if guard.flagged:
            return await fleet.safety.withheld(reply, guard.flagged)
        if sent.message_ids:
            fleet.memory.replied(reply, fleet.clock())
            # What was shown stays in the conversation, a reply cut part-way included.
            await self.feed_back(reply, persona, sent)
        return "sent" if sent.complete else "cut_off"

    async def snapshots(
        self,
        persona: Persona,
        request: LLMRequest,
        footer: str,
        greet: Callable[[], Awaitable[str]] | None = None,
        guard: ReplyGuard | None = None,
    ) -> AsyncIterator[str]:
        """The sanitised text so far, each time more arrives; the footer joins the final one only, the
        persona's greeting (if greet says it is due) goes in front of the model's words.

        The guard sees the model's words in every snapshot before the adapter does; one it stops ends
        the reply as an IncompleteReply with nothing to keep (bots/core/safety/outgoing.py says why
        that is safe)."""
        names = self._speaker_names()
        hello = ""

        def words(raw: str) -> str:
            return sanitize(unlabel(raw, names), persona.name)

        def greeted(body: str) -> str:
            return f"{hello}\n\n{body}" if hello and body else body

        text = ""
        shown = ""
        guard = guard or self.fleet.safety.guard(persona, _NO_REPLY)
        try:
            async for part in self.fleet.brain.write(persona, request):
                text += part
                body = words(text)
                if greet is not None and body:
                    # Asked once the model has words: a reply dropped before them greets nobody.
                    hello, greet = sanitize(await greet()), None
                now = greeted(body)
                if now and now != shown and not guard.hold:
                    if guard.check(body, partial=True):
                        break
                    shown = now
                    yield now
        except IncompleteReply:
            raise IncompleteReply(greeted(words(text))) from None
        except asyncio.CancelledError:
            self._cut_short(greeted(words(text)))
        if guard.flagged:
            raise IncompleteReply("")
        whole = words(text)
        if await guard.final(whole):
            raise IncompleteReply("")
        final = _with_footer(greeted(whole), guard.footer(whole, footer))
        if final != shown:
            yield final

    def _cut_short(self, partial: str) -> NoReturn:
        """Shutdown cut this reply mid-way: end it the way a model that stopped early would, so the
        adapter marks or removes what is already shown instead of leaving half a message."""
        task = asyncio.current_task()
        if not self.cutting or task is None:
            raise asyncio.CancelledError
        task.uncancel()
        raise IncompleteReply(partial) from None

    async def feed_back(self, reply: Reply, persona: Persona, sent: Sent) -> None:
        """A persona's message becomes a turn of the conversation, as if it had been received.

        Telegram never shows a bot another bot's message, and on every platform the fleet knows its
        own chain better than any echo could, so own turns come from here, not from the wire.
        """
        for message_id in sent.message_ids:
            self.authored[f"{reply.platform}:{message_id}"] = persona.id
        while len(self.authored) > 20_000:
            self.authored.popitem(last=False)
        await self.fleet.dispatch(self._echo(reply, persona, sent))

    def _echo(self, reply: Reply, persona: Persona, sent: Sent) -> Message:
        replied = self.fleet.audit.get(f"{reply.platform}:{reply.reply_to}") if reply.reply_to else None
        replied_persona = None
        channel_name, parent = "", None
        if replied is not None:
            if isinstance(replied.event, Message):
                replied_persona = replied.event.author.persona_id
            if replied.event.channel == reply.channel:
                # Channel allow/deny lists name channels; ids alone would deny every persona-to-persona reply.
                channel_name, parent = replied.event.channel_name, replied.event.parent_channel
        return Message(
            platform=reply.platform,
            id=sent.message_ids[0],
            channel=reply.channel,
            author=Author(id=f"persona:{persona.id}", name=persona.name, is_bot=True, persona_id=persona.id),
            # The footer is the fleet's, not the persona's words: kept out of history, the model never
            # learns to write disclosure lines itself.
            text=sent.text.removesuffix(f"\n\n{reply.footer}") if reply.footer else sent.text,
            reply_to_persona=replied_persona,
            reply_to_id=reply.reply_to,
            chain=reply.chain,
            channel_name=channel_name,
            parent_channel=parent,
            root=reply.root,
        )

    def persona_of(self, platform: str, message_id: str) -> str | None:
        return self.authored.get(f"{platform}:{message_id}")

    async def cut(self, pending: list[asyncio.Task[None]]) -> None:
        log.warning("shutdown: cancelling %d replies still in flight", len(pending))
        # Replies whose words are streaming end as cut-off replies (see snapshots), which adapters mark
        # or remove; that is one more platform call, so it gets a moment before the final cancel.
        self.cutting = True
        for task in pending:
            task.cancel()
        _, stuck = await asyncio.wait(pending, timeout=CUT_GRACE)
        for task in stuck:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


def _with_footer(text: str, footer: str) -> str:
    if not footer:
        return text
    return f"{text}\n\n{footer}" if text else footer
