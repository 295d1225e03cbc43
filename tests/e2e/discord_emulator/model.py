"""Emulated Discord objects: snowflakes, a controllable clock, users, roles, channels, messages."""

from __future__ import annotations

import itertools
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

DISCORD_EPOCH_MS = 1_420_070_400_000

ADMINISTRATOR = 1 << 3
MANAGE_THREADS = 1 << 34
ALL_PERMISSIONS = (1 << 53) - 1
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
MANAGE_MESSAGES = 1 << 13
MANAGE_GUILD = 1 << 5
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
USE_APPLICATION_COMMANDS = 1 << 31
CREATE_PUBLIC_THREADS = 1 << 35
SEND_MESSAGES_IN_THREADS = 1 << 38
EVERYONE_PERMISSIONS = (
    VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | USE_APPLICATION_COMMANDS
    | CREATE_PUBLIC_THREADS
    | SEND_MESSAGES_IN_THREADS
)

TEXT_CHANNEL = 0
DM_CHANNEL = 1
PUBLIC_THREAD = 11
PRIVATE_THREAD = 12
EPHEMERAL_FLAG = 1 << 6
LOADING_FLAG = 1 << 7
SUPPRESS_EMBEDS_FLAG = 1 << 2

USER_MENTION = re.compile(r"<@!?(\d+)>")
ROLE_MENTION = re.compile(r"<@&(\d+)>")


class Clock:
    """Monotonic time plus an offset tests can advance, so 3 s and 15 min pass instantly."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        """Seconds on the emulator's monotonic clock."""
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        """Move the clock forward (token expiry, acknowledgement deadline, rate-limit windows)."""
        self.offset += seconds

    def wall(self) -> datetime:
        """The emulated wall-clock time, for message timestamps."""
        return datetime.now(UTC) + timedelta(seconds=self.offset)


class Snowflakes:
    """Discord-shaped ids that always increase, even within one millisecond."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.counter = itertools.count()
        self.last = 0

    def next(self) -> int:
        """A fresh snowflake larger than every earlier one."""
        millis = int(self.clock.wall().timestamp() * 1000) - DISCORD_EPOCH_MS
        candidate = (millis << 22) | (next(self.counter) & 0xFFF)
        self.last = max(candidate, self.last + 1)
        return self.last

    def on_shard(self, shard: int, shard_count: int) -> int:
        """A fresh snowflake whose server would be on `shard` of `shard_count` (a guild id)."""
        millis = (self.next() >> 22) + 1
        millis += (shard - millis) % shard_count
        self.last = max(millis << 22, self.last + 1)
        return self.last

    def aged(self, seconds: float) -> int:
        """A unique snowflake whose timestamp lies `seconds` in the past (an old interaction)."""
        millis = int((self.clock.wall().timestamp() - seconds) * 1000) - DISCORD_EPOCH_MS
        return (millis << 22) | (next(self.counter) & 0xFFF)


def iso(moment: datetime) -> str:
    """Discord's ISO-8601 timestamp form."""
    return moment.isoformat(timespec="microseconds")


@dataclass
class User:
    """A Discord user; `bot` marks the application's own user."""

    id: int
    username: str
    bot: bool = False

    @property
    def mention(self) -> str:
        """The `<@id>` form that pings this user."""
        return f"<@{self.id}>"

    def payload(self) -> dict[str, Any]:
        """The user object Discord sends."""
        data: dict[str, Any] = {
            "id": str(self.id),
            "username": self.username,
            "discriminator": "0",
            "global_name": self.username.title(),
            "avatar": None,
            "public_flags": 0,
        }
        if self.bot:
            data["bot"] = True
        return data


@dataclass
class Role:
    """A guild role; the bot's own role is `managed` with `bot_id` in its tags."""

    id: int
    name: str
    permissions: int
    position: int = 0
    managed: bool = False
    bot_id: int | None = None

    @property
    def mention(self) -> str:
        """The `<@&id>` form that pings this role."""
        return f"<@&{self.id}>"

    def payload(self) -> dict[str, Any]:
        """The role object Discord sends."""
        data: dict[str, Any] = {
            "id": str(self.id),
            "name": self.name,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "icon": None,
            "unicode_emoji": None,
            "position": self.position,
            "permissions": str(self.permissions),
            "managed": self.managed,
            "mentionable": True,
            "flags": 0,
        }
        if self.bot_id is not None:
            data["tags"] = {"bot_id": str(self.bot_id)}
        return data


@dataclass
class Member:
    """A user's membership in the guild: their roles and join time."""

    user: User
    role_ids: list[int]
    joined_at: datetime

    def payload(self, *, with_user: bool = True) -> dict[str, Any]:
        """The guild member object Discord sends."""
        data: dict[str, Any] = {
            "roles": [str(role_id) for role_id in self.role_ids],
            "nick": None,
            "avatar": None,
            "joined_at": iso(self.joined_at),
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "pending": False,
            "flags": 0,
            "communication_disabled_until": None,
        }
        if with_user:
            data["user"] = self.user.payload()
        return data


@dataclass
class Channel:
    """A text channel or a thread (a thread has a parent and thread metadata; a private
    thread also its members)."""

    id: int
    name: str
    type: int = TEXT_CHANNEL
    position: int = 0
    parent_id: int | None = None
    owner_id: int | None = None
    auto_archive_duration: int = 1440
    archived: bool = False
    locked: bool = False
    created_at: datetime | None = None
    message_count: int = 0
    overwrites: list[dict[str, Any]] = field(default_factory=list)
    guild_id: int = 0
    """The server the channel is in (set by the world)."""
    member_ids: set[int] = field(default_factory=set)
    recipient: User | None = None
    """The user at the other end of a DM channel (type 1; it has no server)."""

    @property
    def is_thread(self) -> bool:
        """True for threads."""
        return self.type in (10, 11, 12)

    @property
    def is_dm(self) -> bool:
        """True for a direct-message channel."""
        return self.type == DM_CHANNEL

    def payload(self, guild_id: int) -> dict[str, Any]:
        """The channel object Discord sends (a DM's: no server, its recipient)."""
        if self.is_dm and self.recipient is not None:
            return {
                "id": str(self.id),
                "type": DM_CHANNEL,
                "last_message_id": None,
                "flags": 0,
                "recipients": [self.recipient.payload()],
            }
        data: dict[str, Any] = {
            "id": str(self.id),
            "type": self.type,
            "guild_id": str(guild_id),
            "name": self.name,
            "position": self.position,
            "permission_overwrites": list(self.overwrites),
            "nsfw": False,
            "rate_limit_per_user": 0,
            "topic": None,
            "last_message_id": None,
            "parent_id": str(self.parent_id) if self.parent_id else None,
            "flags": 0,
        }
        if self.is_thread:
            data |= self._thread_fields()
        return data

    def _thread_fields(self) -> dict[str, Any]:
        """The fields only a thread has."""
        created = iso(self.created_at or datetime.now(UTC))
        return {
            "owner_id": str(self.owner_id),
            "message_count": self.message_count,
            "total_message_sent": self.message_count,
            "member_count": 1,
            "thread_metadata": {
                "archived": self.archived,
                "auto_archive_duration": self.auto_archive_duration,
                "archive_timestamp": created,
                "locked": self.locked,
                "create_timestamp": created,
            },
        }


@dataclass
class Edit:
    """One revision of a message: when (emulator clock), its content, the request body and the
    message's flags after it."""

    at: float
    content: str
    body: dict[str, Any]
    flags: int = 0


@dataclass
class Message:
    """A message as the emulator stores it, with every revision kept."""

    id: int
    channel_id: int
    author: User
    content: str
    created_at: float
    timestamp: datetime
    type: int = 0
    flags: int = 0
    embeds: list[dict[str, Any]] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[dict[str, Any]] = field(default_factory=list)
    message_reference: dict[str, Any] | None = None
    allowed_mentions: dict[str, Any] | None = None
    mentions: list[User] = field(default_factory=list)
    mention_roles: list[int] = field(default_factory=list)
    mention_everyone: bool = False
    edited_timestamp: datetime | None = None
    edits: list[Edit] = field(default_factory=list)
    reactions: list[tuple[float, str, str]] = field(default_factory=list)
    """The bot's own reactions: (when, "add" or "remove", emoji)."""
    deleted: bool = False
    interaction_id: int | None = None
    webhook_id: int | None = None
    thread_id: int | None = None

    @property
    def is_ephemeral(self) -> bool:
        """True when only the invoking user sees the message."""
        return bool(self.flags & EPHEMERAL_FLAG)

    @property
    def history(self) -> list[str]:
        """Every content the message had, first to last."""
        return [edit.content for edit in self.edits]

    @property
    def flag_history(self) -> list[int]:
        """The message's flags after its creation and after each edit, first to last."""
        return [edit.flags for edit in self.edits]


def parse_mentions(content: str) -> tuple[list[int], list[int], bool]:
    """User ids, role ids and whether @everyone/@here appear in content, as Discord parses them."""
    users = list(dict.fromkeys(int(match) for match in USER_MENTION.findall(content)))
    roles = list(dict.fromkeys(int(match) for match in ROLE_MENTION.findall(content)))
    return users, roles, "@everyone" in content or "@here" in content
