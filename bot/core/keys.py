"""Redis key names of one conversation, all under one hash tag so they share a Cluster slot."""

from __future__ import annotations

from dataclasses import dataclass

LOCAL_GUILD = "local"
MAX_NAME_LENGTH = 100
_FORBIDDEN_CHARACTERS = frozenset("{}")


def _check_name(kind: str, name: str) -> None:
    """Raise ValueError unless `name` is 1-100 characters without braces or whitespace."""
    if not 1 <= len(name) <= MAX_NAME_LENGTH:
        raise ValueError(
            f"A {kind} name must be 1 to {MAX_NAME_LENGTH} characters long, not {len(name)}."
        )
    if any(char.isspace() or char in _FORBIDDEN_CHARACTERS for char in name):
        raise ValueError(f"A {kind} name must not contain braces or whitespace: {name!r}.")


@dataclass(frozen=True, slots=True)
class ConversationKey:
    """One conversation: a guild (or "local" for the terminal) and a channel or thread in it."""

    guild: str
    channel: str

    def __post_init__(self) -> None:
        """Refuse names that would break the hash tag or the key layout."""
        _check_name("guild", self.guild)
        _check_name("channel", self.channel)

    @classmethod
    def terminal(cls, name: str) -> ConversationKey:
        """The conversation of a terminal session called `name`."""
        return cls(LOCAL_GUILD, name)

    @property
    def tag(self) -> str:
        """The Redis Cluster hash tag every key of this conversation carries."""
        return "{" + str(self) + "}"

    @property
    def items(self) -> str:
        """The list of stored history items, oldest first."""
        return self.sub("items")

    @property
    def lock(self) -> str:
        """The cross-process turn lock."""
        return self.sub("lock")

    def sub(self, name: str) -> str:
        """Any other per-conversation key, e.g. `sub("settings")`."""
        return f"{self.tag}:{name}"

    def __str__(self) -> str:
        """A stable id such as "g:123:c:456", fit for hashing and logs."""
        return f"g:{self.guild}:c:{self.channel}"
