"""The seams of the core: what it needs from state, the LLM and platforms, as Protocols and the small
value types that cross them. Implementations live in bots.state, bots.llm and adapters/; the core
imports only this module."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from bots.config import FleetConfig
from bots.core.events import Event, ImagePart, Notice, React, Reply, Sent
from bots.core.memory.notes import NoteBook
from bots.persona import Persona


@dataclass(frozen=True, slots=True)
class Turn:
    """One message in a conversation's history: a human's, or one of the fleet's own."""

    speaker: str  # display name
    text: str
    at: float
    user_id: str = ""  # platform user id of a human speaker ("" for personas)
    persona_id: str | None = None
    message_id: str = ""
    # The message a persona's turn answered: /forget of that message's author removes the reply too,
    # since a reply may quote what the person said.
    reply_to: str = ""

    def to_dict(self) -> dict[str, object]:
        return {
            "speaker": self.speaker,
            "text": self.text,
            "at": self.at,
            "user_id": self.user_id,
            "persona_id": self.persona_id,
            "message_id": self.message_id,
            "reply_to": self.reply_to,
        }

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> Turn:
        return cls(
            speaker=str(d["speaker"]),
            text=str(d["text"]),
            at=float(d["at"]),  # type: ignore[arg-type]
            user_id=str(d.get("user_id") or ""),
            persona_id=d.get("persona_id") or None,  # type: ignore[arg-type]
            message_id=str(d.get("message_id") or ""),
            reply_to=str(d.get("reply_to") or ""),
        )


class Store(Protocol):
    async def first_seen(self, key: str, ttl: float, now: float) -> bool:
        """True the first time key is offered within ttl seconds (event dedupe)."""
        ...

    async def append(self, conversation: str, turn: Turn) -> None: ...

    async def history(self, conversation: str, limit: int) -> list[Turn]:
        """The newest `limit` turns, oldest first."""
        ...

    async def forget_user(self, platform: str, user_id: str) -> int:
        """Delete every stored turn of that user, and the fleet's replies to those turns (a reply may
        quote them; replies to those replies go too); returns how many were removed. Their healthy-use
        counters ("use:<platform>:<user>", add_daily) go too; care records stay until they lapse."""
        ...

    async def prune(self, now: float) -> int:
        """Delete history older than the retention period; returns how many turns were removed."""
        ...

    async def set_opt_out(self, platform: str, user_id: str, opted_out: bool) -> None: ...

    async def is_opted_out(self, platform: str, user_id: str) -> bool: ...

    async def set_muted(self, conversation: str, persona_id: str, muted: bool) -> None: ...

    async def muted(self, conversation: str) -> frozenset[str]: ...

    async def followers(self, platform: str, user_id: str) -> tuple[str, ...] | None:
        """The personas a user chose to follow them in feeds (None: the channel's default set)."""
        ...

    async def set_followers(self, platform: str, user_id: str, persona_ids: tuple[str, ...] | None) -> None: ...

    async def first_contact(self, platform: str, persona_id: str, user_id: str, now: float) -> bool:
        """True (and `now` recorded) the first time persona_id addresses user_id on platform.

        /forget deletes these records too, so a forgotten user is told again. A persona's greeting uses
        the same record with user_id "channel:<channel id>" (bots/core/greeting.py)."""
        ...

    async def add_usage(self, day: str, deltas: Mapping[str, int]) -> dict[str, int]:
        """Add token counts to the totals of one UTC day; returns every total of that day.

        Keys are "fleet", "p:<persona>" and "u:<platform>:<user>"; processes sharing a store
        thereby share one budget."""
        ...

    async def add_daily(self, day: str, key: str, deltas: Mapping[str, int]) -> dict[str, int]:
        """Add to the small set of counters `key` holds for one UTC day; returns all of them.

        The healthy-use counters per person ("use:<platform>:<user>": messages, seconds, nudged)
        live here; shared by every process on a Redis store, gone after a few days."""
        ...

    # --- care mode (bots.core.safety): who the personas stay quiet toward, shared by every process ---

    async def set_care(self, platform: str, user_id: str, conversation: str, until: float, now: float) -> None:
        """Keep the person in care in that conversation until `until` (never moved earlier); gone after."""
        ...

    async def care_until(self, platform: str, user_id: str, conversation: str, now: float) -> float | None:
        """Until when the person is in care there; None if not (or no longer) at `now`."""
        ...

    # --- relationship memory (bots.core.memory); a person is "platform:user id" unless linked ---

    async def notes(self, person: str) -> dict[str, NoteBook]:
        """Every owner's (persona id or "shared") notes about a person."""
        ...

    async def write_notes(self, person: str, owner: str, book: NoteBook) -> bool:
        """Compare-and-set: stored only if the stored book's version is book.version - 1 (none: 0)."""
        ...

    async def forget_notes(self, person: str, owner: str | None = None) -> int:
        """Delete one owner's notes about a person (None: every owner's); returns how many notes went."""
        ...

    async def person_of(self, platform: str, user_id: str) -> str:
        """The person an account belongs to: the one it was linked to, else "platform:user id"."""
        ...

    async def offer_link(self, code: str, person: str, ttl: float, now: float) -> bool:
        """Keep a one-time link code for `ttl` seconds; False if the store could not."""
        ...

    async def redeem_link(self, code: str, platform: str, user_id: str, now: float) -> str | None:
        """Use a link code once: the account joins the code's person, which is returned (None: unknown)."""
        ...

    async def unlink(self, platform: str, user_id: str) -> None: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Rate:
    key: str
    limit: int
    period: float
    # What the limit is called in decision reasons (per_minute, cooldown, channel_per_minute ...).
    label: str
    cost: float = 1.0


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    # The limit that blocked, or "max_responders" when the cap on grants was reached first.
    blocked_by: str = ""
    retry_after: float = 0.0


ALLOWED = Verdict(True)


CAPPED = Verdict(False, "max_responders")


class RateLimiter(Protocol):
    async def acquire(self, candidates: Sequence[Sequence[Rate]], max_grants: int, now: float) -> list[Verdict]:
        """Admit candidates in order while every key has room and fewer than max_grants were admitted."""
        ...

    async def close(self) -> None: ...


class Claims(Protocol):
    """Who is answering which message, so that a message outlives the process answering it.

    A claim is also the event dedupe: within `keep` seconds the first claim of a key wins and a later
    one is a duplicate, unless the claim is still pending and its owner let the lease lapse (it died):
    then the claimer takes it over. The owner renews its pending claims until it marks them done
    (every action of the plan has an outcome); `take_expired` hands claims whose owner died to another
    process, with their payload (an event and its actions, bots.core.codec).
    """

    # Whether other processes share these claims, and so may take them over.
    shared: bool

    async def claim(self, key: str, payload: str, owner: str, lease: float, keep: float, now: float) -> bool: ...

    async def update(self, key: str, owner: str, payload: str) -> None:
        """Replace the payload of a claim still owned (the decided actions, then those left)."""
        ...

    async def renew(self, keys: Sequence[str], owner: str, lease: float, now: float) -> list[str]:
        """Extend the leases of owned pending claims; returns the keys no longer owned."""
        ...

    async def done(self, key: str, owner: str) -> None:
        """Answered: no longer pending, still a duplicate for the rest of its `keep` seconds."""
        ...

    async def release(self, key: str, owner: str) -> None:
        """Hand a pending claim back (clean shutdown): another process may take it over at once."""
        ...

    async def take_expired(self, owner: str, lease: float, now: float, limit: int) -> list[tuple[str, str]]:
        """Re-own up to `limit` pending claims whose lease lapsed: their (key, payload)."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Entry:
    """One message's admission: its claim, whose opt-out to check, the turn to remember, where its
    mutes are, and per candidate persona (best first) the rates a reply must fit."""

    key: str
    payload: str  # the claim's payload (bots.core.codec)
    owner: str
    lease: float
    keep: float
    platform: str
    user: str  # whose opt-out silences the message ("" for personas and bots)
    conversation: str  # "<platform>:<channel>": history and mutes
    parent: str = ""  # the parent channel's conversation, whose mutes cover this one too
    turn: Turn | None = None  # appended unless the author opted out
    candidates: tuple[str, ...] = ()  # persona ids, in the order they are admitted
    rates: tuple[Sequence[Rate], ...] = ()  # per candidate
    max_grants: int = 0
    # No action can come of it (no trigger hit): the claim is done as soon as it is taken.
    settle: bool = False
    # Only a granted reply can come of it (no reactions, no notice owed): done at once if none is.
    settle_unless_granted: bool = False
    # Read the author's care end for the conversation too (care mode on, and a person wrote it).
    care: bool = False


@dataclass(frozen=True, slots=True)
class Admitted:
    """What routing needs back: whether the claim was won, the author's opt-out, the mutes, and per
    candidate a verdict (a muted one is refused as "muted" and takes no slot)."""

    claimed: bool
    opted_out: bool = False
    muted: frozenset[str] = frozenset()
    verdicts: tuple[Verdict, ...] = ()
    # The claim is already done (Entry.settle, or the author opted out): nothing to settle later.
    settled: bool = False
    # With Entry.care: until when personas keep quiet toward the author there (None: not in care;
    # math.inf: the read failed, and unknown counts as in care). Not read for a duplicate or opt-out.
    care_until: float | None = None


MUTED = Verdict(False, "muted")


class Admission(Protocol):
    """Everything deciding a message needs from shared state, in one step: claim (dedupe), opt-out,
    history append, the author's care end, mutes and every rate limit of every candidate. On Redis
    that is one script call, concurrent messages sharing one; in memory it is the Claims, Store and
    RateLimiter calls in turn."""

    async def admit(self, entry: Entry, now: float) -> Admitted: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Pace:
    """One budget a platform call spends: slots on `key` at least `interval` seconds apart on average,
    and at most `burst` of them in any window of `burst * interval` seconds (burst 1: plain spacing).
    An interval of 0 books nothing: the call only waits out a pause of the key (see Pacer.pause).
    A key is always used with the same interval and burst."""

    key: str
    interval: float
    burst: int = 1


class Pacer(Protocol):
    """Platform pacing shared by every process that may post as the same account.

    Any process may send as any account, so "1 message per second per chat" and a 429's "retry after"
    only hold if every process books its sends in one place: the memory pacer serves one process, the
    Redis pacer all processes on that Redis (one clock: the server's). Answers are durations, so the
    caller sleeps them on its own clock whichever clock the pacer reads.
    """

    async def reserve(self, paces: Sequence[Pace], now: float) -> float:
        """Book the earliest slot that every pace allows and no key of them is paused at; returns how
        many seconds from now that slot is. The slot is booked on every key: the caller sends then."""
        ...

    async def pause(self, key: str, seconds: float, now: float) -> None:
        """No slot on key within `seconds` from now (a 429's retry_after), in every process sharing
        this pacer; a shorter pause never cuts a longer one."""
        ...


@dataclass(frozen=True, slots=True)
class LLMRequest:
    # OpenAI chat messages; a content is a string, or a list of text and image_url parts.
    messages: tuple[dict[str, Any], ...]
    model: str
    temperature: float
    max_tokens: int
    # "platform:user id" the reply is for: our own accounting only, never sent to the endpoint.
    user: str | None = None


@dataclass(frozen=True, slots=True)
class Chunk:
    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class LLMError(Exception):
    """The reply could not be written; `kind` is a short label for logs and metrics."""

    def __init__(self, kind: str, detail: str = ""):
        self.kind = kind
        super().__init__(f"{kind}: {detail}" if detail else kind)


class LLMClient(Protocol):
    name: str

    def stream(self, request: LLMRequest) -> AsyncIterator[Chunk]: ...

    async def close(self) -> None: ...


@runtime_checkable
class ImageSource(Protocol):
    """An adapter that can fetch the photos it received (bots.core.events.ImagePart)."""

    async def image_url(self, part: ImagePart, max_side: int) -> str:
        """The photo as a data URL, long side at most max_side; raises ImageUnavailable. Fetched only
        from the platform's own hosts, size-limited while streaming, never logged."""
        ...


class ImageUnavailable(Exception):
    """A photo that could not be fetched; `kind` is a short label (too_big, redirect, timeout...)
    and never carries a URL (Telegram's file URLs contain the bot token)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        super().__init__(kind)


class FleetView(Protocol):
    """What an adapter may see of the fleet: the personas, and where to hand events."""

    @property
    def personas(self) -> Mapping[str, Persona]: ...

    @property
    def config(self) -> FleetConfig:
        """The fleet's configuration (adapters read their feed channels from it)."""
        ...

    # The fleet's clock and sleep: adapters pace streaming edits and typing with these, never with
    # asyncio.sleep or loop.time directly, so tests and outside harnesses control time.
    clock: Callable[[], float]
    sleep: Callable[[float], Awaitable[object]]
    # Where adapters book their sends (platform pacing and 429 pauses), shared between processes
    # when the store is Redis.
    pacer: Pacer

    async def dispatch(self, event: Event) -> None: ...

    def persona_of(self, platform: str, message_id: str) -> str | None:
        """The persona that wrote a platform message the fleet sent (reply triggers)."""
        ...


class Adapter(Protocol):
    platform: str
    # Characters per message on this platform; replies are split to fit.
    text_limit: int

    async def start(self, fleet: FleetView) -> None:
        """Get ready to send (log in, build clients). Receiving starts per account with `connect`."""
        ...

    def accounts(self) -> list[str]:
        """The platform accounts whose connection receives events, e.g. "telegram:host", "discord:skeptic".

        Only one process may hold an account's receiving connection at a time (Telegram allows one
        getUpdates consumer per token; two Discord gateway sessions would answer twice), so with a shared
        Redis store the fleet leases accounts and connects only those it holds. Any process may send
        as any account.
        """
        ...

    async def connect(self, account: str) -> bool:
        """Start receiving on one account; False (logged) if the platform refused it, e.g. a bad token."""
        ...

    async def disconnect(self, account: str) -> None: ...

    async def stop(self) -> None: ...

    async def deliver(self, reply: Reply, persona: Persona, snapshots: AsyncIterator[str]) -> Sent:
        """Post a reply. `snapshots` yields the whole sanitised text so far each time more arrives; the
        last one is final. It raises bots.brain.IncompleteReply if the model stopped without finishing:
        whatever was already shown must then be marked as cut off or removed."""
        ...

    async def react(self, react: React, persona: Persona) -> None: ...

    async def notify(self, notice: Notice) -> None: ...
