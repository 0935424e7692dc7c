"""The web room: the fleet's social feed and chat rooms in a browser, and an operator's view.

Each browser is a person (adapters.web.sessions) with the display name they chose; what they type
becomes Message and Command events like any platform's, so history, limits, opt-outs, /forget and
the AI disclosure all go through the core. A feed post opens its own thread (conversation
`web:<feed>-<post id>`, the post's channel being the feed), as a Discord forum post does, so `/more`
and replies to a comment continue that post's conversation. Replies stream to every open page as
the model writes them (adapters.web.hub); pages render all text with textContent.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from bots.core.brain import IncompleteReply
from bots.core.events import Author, Command, ImagePart, Message, Notice, React, Reply, Sent
from bots.core.feed import follower_pool
from bots.core.images import admit
from bots.core.ports import FleetView, ImageUnavailable
from bots.core.text import at_names
from bots.persona import Persona

from .hub import Hub
from .sessions import Session, Sessions
from .settings import DEFAULT_FEED, WebConfig

if TYPE_CHECKING:
    from aiohttp import web

    from bots.core.fleet import Fleet
    from bots.ops.control import Ops

    from .operator import OperatorView
    from .uploads import Photo, Photos

log = logging.getLogger("botfleet.web")

TEXT_MAX = 4000
# Seconds between the streamed updates of a reply that pages get (the last one always goes).
STREAM_INTERVAL = 0.1


class InputError(ValueError):
    """A request the room cannot take (unknown channel, empty text); the message says why."""


def persona_card(p: Persona) -> dict[str, Any]:
    return {"id": p.id, "name": p.name, "bio": p.display_bio}


class WebAdapter:
    platform = "web"
    text_limit = 4000

    def __init__(self, settings: WebConfig | None = None, *, sample_seconds: float = 5.0) -> None:
        self.settings = settings or WebConfig()
        # How often the operator's charts take a point of the metrics.
        self.sample_seconds = sample_seconds
        self.hub = Hub(self.settings.backlog)
        self.sessions = Sessions()
        self.fleet: FleetView | None = None
        self.ops: Ops | None = None
        self.operator: OperatorView | None = None
        self.run_id = secrets.token_hex(3)
        self._count = 0
        self._runner: web.AppRunner | None = None
        self.port = self.settings.port
        self.photos: Photos | None = None
        # Opened beside the console without being asked for: a taken port is a warning, not an error.
        self.optional = False

    # --- lifecycle --------------------------------------------------------------------------------

    def make_optional(self) -> None:
        self.optional = True

    def attach_ops(self, ops: Ops) -> None:
        """The running App's ops: metrics for the charts, reload for the operator's button."""
        self.ops = ops

    @property
    def url(self) -> str:
        host = self.settings.host
        # Listening on every interface: the address to open on this machine is loopback.
        shown = "127.0.0.1" if host in ("0.0.0.0", "", "::") else f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.port}/" if self._runner is not None else ""

    async def start(self, fleet: FleetView) -> None:
        # aiohttp (a dependency of discord.py too) loads only when the web room runs.
        from aiohttp import web

        from .operator import OperatorView
        from .server import make_app
        from .uploads import Photos

        self.fleet = fleet
        if self.photos is None:
            self.photos = Photos()
        if self.settings.admin_token:
            self.operator = OperatorView(self, self.settings.admin_token, sample_seconds=self.sample_seconds)
            self.operator.start()
        # lingering_time: after refusing an oversized upload, how long the rest is drained (and dropped)
        # so the browser still reads the refusal; aiohttp's default is 10 s.
        runner = web.AppRunner(make_app(self), access_log=None, handle_signals=False, lingering_time=2.0)
        await runner.setup()
        site = web.TCPSite(runner, self.settings.host, self.settings.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            if self.operator is not None:
                await self.operator.stop()
                self.operator = None
            # The errno's words ("Address already in use"), not asyncio's sentence around them.
            why = os.strerror(exc.errno) if exc.errno else str(exc)
            where = f"cannot listen on {self.settings.host}:{self.settings.port} ({why})"
            fix = "set adapters.web.port (BOTFLEET_WEB_PORT in the shipped config.yaml) to a free port"
            if self.optional:
                log.warning("web room not opened: %s; the console runs on. For the web room, %s", where, fix)
                return
            from bots.app import SetupError  # bots.app imports the registry, which builds this adapter

            raise SetupError(f"web room: {where}; {fix}") from None
        self._runner = runner
        # Port 0 (tests): the port the system chose.
        self.port = int(runner.addresses[0][1])
        log.info("web room on %s", self.url)

    def accounts(self) -> list[str]:
        # No platform account: the room is this process's own server.
        return []

    async def connect(self, account: str) -> bool:
        return False

    async def disconnect(self, account: str) -> None:
        return None

    async def stop(self) -> None:
        self.hub.close_all()
        if self.operator is not None:
            await self.operator.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- what people do ---------------------------------------------------------------------------

    @property
    def feed(self) -> str:
        assert self.fleet is not None
        feeds = self.fleet.config.feeds.sections().get(self.platform) or ()
        return feeds[0].channel if feeds else DEFAULT_FEED

    def _next_id(self, kind: str = "") -> str:
        self._count += 1
        return f"{self.run_id}-{kind}{self._count}"

    def _author(self, s: Session) -> Author:
        return Author(id=s.user_id, name=s.name or "guest", is_admin=s.operator)

    def _clock(self) -> float:
        assert self.fleet is not None
        return self.fleet.clock()

    def human(self, s: Session, mid: str, channel: str, text: str, reply_to: str | None) -> dict[str, Any]:
        return {
            "id": mid,
            "channel": channel,
            "author": {"name": s.name or "guest", "user": s.user_id, "persona": None, "ai": False},
            "text": text,
            "reply_to": reply_to,
            "at": self._clock(),
            "reactions": [],
        }

    def thread_of(self, post_id: str) -> str:
        return f"{self.feed}-{post_id}"

    def _where(self, channel: str) -> tuple[str, str | None]:
        """(channel name, parent channel) of a channel pages may write to; InputError otherwise."""
        if channel in self.settings.rooms:
            return channel, None
        feed = self.feed
        if channel == feed:
            return feed, None
        post = channel.removeprefix(f"{feed}-")
        if post != channel and (m := self.hub.message(post)) is not None and m.get("post"):
            return feed, feed
        raise InputError(f"no such channel: {channel}")

    def _photos(self, s: Session, text: str, photos: Sequence[Photo]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(what the page shows, what the Message carries) of a message's photos: the caps of
        bots.core.images.admit, the shown copies kept and served at same-origin paths."""
        if not photos:
            return {}, {}
        assert self.fleet is not None and self.photos is not None
        # One photo with words: the words are its caption (a model that cannot see is told them).
        alt = text if len(photos) == 1 else ""
        parts = [ImagePart(p.mime, len(p.data), alt, data=p.data) for p in photos]
        of = {id(part): photo for part, photo in zip(parts, photos, strict=True)}
        kept, named = admit(parts, self.fleet.config.llm)
        paths = [self.photos.add(of[id(k)], s.user_id) for k in kept]
        return {"photos": paths, "files": list(named)}, {"images": kept, "files": named}

    async def post(self, s: Session, text: object, photos: Sequence[Photo] = ()) -> str:
        """A feed post (words, photos or both): its followers comment in its thread. Returns its id."""
        assert self.fleet is not None
        text = _text(text, photos)
        pid = self._next_id("p")
        thread = self.thread_of(pid)
        shown, carried = self._photos(s, text, photos)
        shown |= {"post": True, "feed": self.feed}
        self.hub.add(self.human(s, pid, thread, text, None) | shown, listed_in=self.feed)
        author = self._author(s)
        event = Message(
            self.platform,
            pid,
            thread,
            author,
            text,
            channel_name=self.feed,
            parent_channel=self.feed,
            is_post=True,
            **carried,
        )
        await self.fleet.dispatch(event)
        return pid

    async def say(
        self, s: Session, channel: str, text: object, reply_to: str | None = None, photos: Sequence[Photo] = ()
    ) -> str:
        """A chat message or a /command in a room or a post's thread. Returns the event's id."""
        assert self.fleet is not None
        text = _text(text, photos)
        name, parent = self._where(channel)
        if reply_to is not None and self.hub.message(reply_to) is None:
            reply_to = None
        mid = self._next_id()
        if text.startswith("/"):
            if photos:
                raise InputError("a /command cannot carry photos")
            verb, _, args = text[1:].partition(" ")
            await self.command(s, channel, verb, args, reply_to=reply_to, mid=mid)
            return mid
        shown, carried = self._photos(s, text, photos)
        self.hub.add(self.human(s, mid, channel, text, reply_to) | shown)
        fleet = self.fleet
        mentions = frozenset(pid for n in at_names(text) if (pid := _named(fleet.personas, n)) is not None)
        event = Message(
            self.platform,
            mid,
            channel,
            self._author(s),
            text,
            mentions=mentions,
            reply_to_persona=fleet.persona_of(self.platform, reply_to) if reply_to else None,
            reply_to_id=reply_to,
            channel_name=name,
            parent_channel=parent,
            **carried,
        )
        await fleet.dispatch(event)
        return mid

    async def image_url(self, part: ImagePart, max_side: int) -> str:
        """ImageSource: an upload's bytes came with its message (bots.core.gallery holds them)."""
        # Pillow, like aiohttp, loads only when the room needs it.
        from bots.media.shrink import as_data_url

        if not part.data:
            raise ImageUnavailable("gone")
        return await as_data_url(part.data, max_side)

    async def followers(self, s: Session) -> list[str]:
        """Who comments on this person's posts: their choice, else the feed's set (the checkboxes)."""
        assert self.fleet is not None
        fleet = cast("Fleet", self.fleet)  # Fleet.start hands adapters the Fleet itself
        feed = fleet.config.feeds.find(self.platform, (self.feed,))
        return [p.id for p in await follower_pool(fleet, feed, self.platform, s.user_id)]

    async def command(
        self, s: Session, channel: str, verb: str, args: str = "", *, reply_to: str | None = None, mid: str = ""
    ) -> None:
        assert self.fleet is not None
        name, parent = self._where(channel)
        verb = verb.strip().lower()
        if not verb:
            raise InputError("empty command")
        event = Command(
            self.platform,
            mid or self._next_id(),
            channel,
            self._author(s),
            verb,
            args.strip(),
            channel_name=name,
            parent_channel=parent,
            reply_to_id=reply_to,
        )
        await self.fleet.dispatch(event)
        if verb == "forget":
            # The room's own view of their words and photos goes too, not only the stored history.
            for written in self.hub.written_by(s.user_id):
                self.hub.remove(written)
            if self.photos is not None:
                self.photos.forget_user(s.user_id)

    # --- what the fleet does ----------------------------------------------------------------------

    async def deliver(self, reply: Reply, persona: Persona, snapshots: AsyncIterator[str]) -> Sent:
        mid = self._next_id("r")
        typing = {"type": "typing", "channel": reply.channel, "persona": persona.id, "name": persona.name}
        self.hub.publish({**typing, "on": True})
        shown = False
        text = ""
        pushed = 0.0
        try:
            async for snapshot in snapshots:
                text = snapshot
                if not shown:
                    self.hub.add(self._persona_message(mid, reply, persona, text))
                    shown, pushed = True, self._clock()
                elif self._clock() - pushed >= STREAM_INTERVAL:
                    # Each update carries the whole text so far: a few a second, not one per token.
                    self.hub.update(mid, text=text)
                    pushed = self._clock()
        except IncompleteReply as cut:
            if shown and cut.partial:
                self.hub.update(mid, text=cut.partial, streaming=False, cut=True)
            elif shown:
                self.hub.remove(mid)
            return Sent(complete=False)
        except BaseException:
            # A dropped reply (LLM error, shutdown) must not stay on the pages half written.
            if shown:
                self.hub.remove(mid)
            raise
        finally:
            self.hub.publish({**typing, "on": False})
        if not shown:
            self.hub.add(self._persona_message(mid, reply, persona, text))
        self.hub.update(mid, text=text, streaming=False)
        return Sent(message_ids=(mid,), text=text)

    def _persona_message(self, mid: str, reply: Reply, persona: Persona, text: str) -> dict[str, Any]:
        return {
            "id": mid,
            "channel": reply.channel,
            "author": {"name": persona.name, "user": None, "persona": persona.id, "ai": True},
            "text": text,
            "reply_to": reply.reply_to,
            "at": self._clock(),
            "reactions": [],
            "streaming": True,
        }

    async def react(self, react: React, persona: Persona) -> None:
        self.hub.react(react.message_id, react.emoji, persona.name)

    async def notify(self, notice: Notice) -> None:
        if notice.private and notice.to_user:
            event = {"type": "notice", "channel": notice.channel, "text": notice.text, "at": self._clock()}
            self.hub.publish(event, to_user=notice.to_user)
            return
        self.hub.add(
            {
                "id": self._next_id("n"),
                "channel": notice.channel,
                "author": {"name": "botfleet", "user": None, "persona": None, "ai": False, "system": True},
                "text": notice.text,
                "reply_to": notice.reply_to,
                "at": self._clock(),
                "reactions": [],
            }
        )


def _named(personas: Mapping[str, Persona], name: str) -> str | None:
    """The persona an @name means: its id, or its name without spaces ("@theskeptic", "@skeptic")."""
    if name in personas:
        return name
    for p in personas.values():
        full = p.name.lower()
        if name in (full.replace(" ", ""), full.removeprefix("the ").replace(" ", "")):
            return p.id
    return None


def _text(raw: object, photos: Sequence[object] = ()) -> str:
    if photos and (raw is None or raw == ""):
        return ""  # a photo alone is a post
    if not isinstance(raw, str) or not (raw.strip() or photos):
        raise InputError("write something first")
    text = raw.strip()
    if len(text) > TEXT_MAX:
        raise InputError(f"at most {TEXT_MAX} characters")
    return text
