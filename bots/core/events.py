"""Platform-neutral events in (Message, Command) and actions out (Reply, React, Notice).

Adapters translate platform traffic into these; the core never sees an SDK object.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Author:
    id: str
    name: str
    is_bot: bool = False
    # Set when the author is one of the fleet's own personas (a persona turn fed back).
    persona_id: str | None = None
    is_admin: bool = False


@dataclass(frozen=True, slots=True)
class ImagePart:
    """A photo attached to a message, as a reference: deciding never fetches it; the adapter that
    received it turns it into a data URL only when a reply that can see it is written.

    `ref` is what that adapter fetches it by (a URL on the platform's own hosts, a Telegram file id);
    `data` holds the bytes instead when the platform handed them over (an upload to a web room).
    """

    mime: str
    size: int = 0  # bytes, 0 when the platform did not say
    alt: str = ""  # caption or alt text, shown to models that cannot see
    ref: str = ""
    data: bytes = b""
    # The platform account that received it (Telegram file ids belong to one bot).
    account: str = ""

    def to_dict(self) -> dict[str, object]:
        # Bytes stay out: claims and logs carry references and captions only.
        return {"mime": self.mime, "size": self.size, "alt": self.alt, "ref": self.ref, "account": self.account}


@dataclass(frozen=True, slots=True)
class Message:
    platform: str
    id: str
    channel: str
    author: Author
    text: str
    # Persona ids the platform itself says were mentioned (Discord user mentions, Telegram entities).
    mentions: frozenset[str] = frozenset()
    # Persona id whose message this one replies to, and that message's id.
    reply_to_persona: str | None = None
    reply_to_id: str | None = None
    is_dm: bool = False
    # For DMs: the persona whose account received it (None: the host account).
    to_persona: str | None = None
    # Number of persona-to-persona hops that led to this message (0 for humans and replies to humans).
    chain: int = 0
    channel_name: str = ""
    # Discord threads and Telegram topics: the channel whose settings apply (allow/deny lists, feeds).
    parent_channel: str | None = None
    # A new top-level post in a feed channel (forum thread starter, channel post copy, console /post).
    is_post: bool = False
    # The key of the human message a persona's message descends from ("" for a human's own message).
    root: str = ""
    # Photos within the fleet's limits (llm.images_per_message, llm.image_max_bytes), and the other
    # files in words ("a 40 MB video"), so a reply can mention what it was not shown.
    images: tuple[ImagePart, ...] = ()
    files: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.platform}:{self.id}"

    @property
    def has_image(self) -> bool:
        return bool(self.images)

    @property
    def conversation(self) -> str:
        return f"{self.platform}:{self.channel}"


@dataclass(frozen=True, slots=True)
class Command:
    platform: str
    id: str
    channel: str
    author: Author
    name: str
    args: str = ""
    # An explicit target persona chosen by the platform (a slash-command option, `/ask@botname`).
    persona: str | None = None
    is_dm: bool = False
    channel_name: str = ""
    parent_channel: str | None = None
    reply_to_id: str | None = None

    @property
    def key(self) -> str:
        return f"{self.platform}:{self.id}"

    @property
    def conversation(self) -> str:
        return f"{self.platform}:{self.channel}"


Event = Message | Command


@dataclass(frozen=True, slots=True)
class Reply:
    persona_id: str
    platform: str
    channel: str
    # The message being answered (replies reference it on platforms that can).
    reply_to: str | None
    reason: str
    delay: float = 0.0
    chain: int = 0
    # The human being answered, for reply pings and disclosure bookkeeping.
    to_user: str | None = None
    # Extra instruction for the prompt (a /panel angle, an /ask question, feed context).
    instruction: str = ""
    # Text appended after the model's words (AI disclosure, sponsor line): never left to the model.
    footer: str = ""
    # Replies sharing a queue are written one at a time in delay order (a post's comments, a panel).
    queue: str = ""
    # The key of the human message (or command) this reply descends from: max_bot_chain counts per root.
    root: str = ""


@dataclass(frozen=True, slots=True)
class React:
    persona_id: str
    platform: str
    channel: str
    message_id: str
    emoji: str
    reason: str


@dataclass(frozen=True, slots=True)
class Notice:
    """A message from the fleet itself (command answers), sent by the host account."""

    platform: str
    channel: str
    text: str
    reply_to: str | None = None
    # Only the invoking user should see it where the platform can do that (Discord ephemeral, Telegram DM).
    private: bool = False
    to_user: str | None = None
    # The command that asked for it, so adapters can answer interactions by follow-up.
    command_id: str | None = None


Action = Reply | React | Notice


@dataclass(frozen=True, slots=True)
class Sent:
    """What an adapter reports after delivering a reply: ids of the platform messages it created."""

    message_ids: tuple[str, ...] = ()
    text: str = ""
    complete: bool = True
    extra: dict[str, str] = field(default_factory=dict)
