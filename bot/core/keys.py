"""Every Redis key name the bot uses: those of one conversation share one hash tag (one Cluster
slot); a few belong to the whole bot or to one server."""

from __future__ import annotations

from dataclasses import dataclass

LOCAL_GUILD = "local"
META = "meta"
"""Per-conversation hash of facts about it (e.g. the owner of a /chat thread)."""
LAST_ANSWER = "last-answer"
"""Per-conversation record of the messages that show the latest answer (for Regenerate)."""
PREFS = "prefs"
"""Per-conversation hash of the channel's choices (model, system prompt)."""
COMMANDS_SYNC_LOCK = "bot:commands:sync-lock"
"""Held by the one process that syncs slash commands."""
INFLIGHT = "inflight"
"""Per-answer record of a reply being streamed (`inflight:<answer id>`), for crash recovery."""
INFLIGHT_INDEX = "bot:inflight"
"""The set of every in-flight record of the bot, so a start can find the orphaned ones."""
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

    @property
    def meta(self) -> str:
        """Facts about the conversation, such as who started its thread."""
        return self.sub(META)

    @property
    def last_answer(self) -> str:
        """Which messages show the latest answer."""
        return self.sub(LAST_ANSWER)

    @property
    def prefs(self) -> str:
        """The channel's own choices."""
        return self.sub(PREFS)

    def inflight(self, answer_id: str) -> str:
        """The in-flight record of one answer streaming in this conversation."""
        return self.sub(f"{INFLIGHT}:{answer_id}")

    def sub(self, name: str) -> str:
        """Any other per-conversation key, e.g. `sub("settings")`."""
        return f"{self.tag}:{name}"

    def __str__(self) -> str:
        """A stable id such as "g:123:c:456", fit for hashing and logs."""
        return f"g:{self.guild}:c:{self.channel}"


def commands_hash(scope: str) -> str:
    """The digest of the slash commands last synced to a scope ("global" or a server id)."""
    return f"bot:commands:hash:{scope}"


def handled_message(message_id: int | str) -> str:
    """The claim that one process answers a Discord message (each is handled once)."""
    return f"bot:handled:{message_id}"


def server_prefs(guild: str) -> str:
    """A server's choices: a hash with a hash tag of its own (one key, one slot)."""
    return f"{{g:{guild}}}:{PREFS}"


def process_alive(process_id: str) -> str:
    """The heartbeat of one bot process: it exists while the process lives (a short TTL)."""
    return f"bot:process:{process_id}:alive"
