"""Where a turn happens and who asks: what a tool needs to know about its caller.

The front-end computes these from its platform (for Discord: the channel, its parent, the
thread's type, and whether @everyone can view it) and hands them to the core unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bot.core.keys import LOCAL_GUILD

ThreadKind = Literal["public", "private"]


@dataclass(frozen=True, slots=True)
class Place:
    """Where something is said: a channel or thread of a server, or a direct conversation.

    `public` says whether everyone in the server can read the place now (for a public thread,
    its parent's visibility); a private thread and a DM are never public, whatever it says.
    `parent` is the channel a thread belongs to.
    """

    guild: str
    channel: str
    parent: str | None = None
    thread: ThreadKind | None = None
    public: bool = False
    direct: bool = False

    @classmethod
    def terminal(cls, channel: str) -> Place:
        """A terminal conversation: a public channel of the terminal's own server."""
        return cls(guild=LOCAL_GUILD, channel=channel, public=True)

    @classmethod
    def dm(cls, channel: str) -> Place:
        """A direct conversation: a place of its own, outside every server."""
        return cls(guild=f"dm-{channel}", channel=channel, direct=True)

    @property
    def is_public(self) -> bool:
        """Whether what is said here may be heard anywhere in the server."""
        return self.public and self.thread != "private" and not self.direct

    @property
    def scope(self) -> str:
        """The channel whose viewers may hear a private fact told here: a public thread's
        parent, a private thread itself, else the channel."""
        if self.thread == "public" and self.parent:
            return self.parent
        return self.channel

    @property
    def reach(self) -> frozenset[str]:
        """The scopes whose private facts may be heard here: this channel, and its parent when
        this is a thread (a thread's readers can read its parent)."""
        return frozenset(c for c in (self.channel, self.parent if self.thread else None) if c)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asks: their platform id, display name, and whether they may manage the server."""

    user_id: str
    name: str
    manage_server: bool = False


@dataclass(frozen=True, slots=True)
class ToolContext:
    """The place and the caller of one turn, for the tools of that turn."""

    place: Place
    caller: Caller
