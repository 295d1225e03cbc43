"""Every Redis key name the bot uses: those of one conversation share one hash tag (one Cluster
slot); a few belong to the whole bot or to one server."""

from __future__ import annotations

from dataclasses import dataclass

LOCAL_GUILD = "local"
DM_GUILD = "dm"
"""The pseudo-server of direct messages: a DM is `ConversationKey(DM_GUILD, <DM channel id>)`,
and every DM's limits and usage live under `ServerKey(DM_GUILD)`. Server ids are numbers, so
neither "dm" nor "local" can collide with a server."""
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

    @property
    def running(self) -> str:
        """Which process streams an answer here now (Stop and Regenerate find it by this)."""
        return self.sub(RUNNING)

    def inflight(self, answer_id: str) -> str:
        """The in-flight record of one answer streaming in this conversation."""
        return self.sub(f"{INFLIGHT}:{answer_id}")

    def sub(self, name: str) -> str:
        """Any other per-conversation key, e.g. `sub("settings")`."""
        return f"{self.tag}:{name}"

    def __str__(self) -> str:
        """A stable id such as "g:123:c:456", fit for hashing and logs."""
        return f"g:{self.guild}:c:{self.channel}"


RUNNING = "running"
"""Per-conversation record of the process streaming an answer there now (with a short TTL)."""
DISCORD_BUDGET = "bot:discord:global-budget"
"""The bot's shared budget of Discord requests per second (one key, used by every process)."""


CONVERSATION_DATA: tuple[str, ...] = ("items", PREFS, META, LAST_ANSWER, "settings")
"""Every per-conversation key that holds data (`ConversationKey.sub(name)`); deleting a server's
data deletes these. A new per-conversation key that holds data belongs here."""


@dataclass(frozen=True, slots=True)
class ServerKey:
    """One server's own keys (choices, limits, usage, the index of its conversations), all under
    the hash tag `{g:<guild>}` so that one script may touch them together on Redis Cluster."""

    guild: str

    def __post_init__(self) -> None:
        """Refuse names that would break the hash tag or the key layout."""
        _check_name("guild", self.guild)

    @property
    def tag(self) -> str:
        """The Redis Cluster hash tag every key of this server carries."""
        return f"{{g:{self.guild}}}"

    @property
    def prefs(self) -> str:
        """The hash of the server's choices (model, system prompt)."""
        return f"{self.tag}:{PREFS}"

    @property
    def limits(self) -> str:
        """The hash of the server's own limits, overriding the configured ones."""
        return f"{self.tag}:limits"

    @property
    def access_channels(self) -> str:
        """The set of channel ids where the shared assistant answers (empty: everywhere)."""
        return f"{self.tag}:access:channels"

    @property
    def access_roles(self) -> str:
        """The set of role ids whose members may use the assistant (empty: everyone)."""
        return f"{self.tag}:access:roles"

    @property
    def conversations(self) -> str:
        """The sorted set of the server's channels with history, scored by last write (ms)."""
        return f"{self.tag}:conversations"

    @property
    def users(self) -> str:
        """The sorted set of members with limit or usage data, scored by last use (ms)."""
        return f"{self.tag}:users"

    def rate(self, user: str) -> str:
        """The sliding window of one member's recent answers (sorted set of times in ms)."""
        return f"{self.tag}:rate:{user}"

    def usage(self, period: str, user: str | None = None) -> str:
        """The usage hash of a day (`d20250131`) or month (`m202501`), of the server or a member."""
        base = f"{self.tag}:usage:{period}"
        return base if user is None else f"{base}:u:{user}"

    def top(self, day: str, by: str) -> str:
        """The sorted set of a day's members by `cost` or `tokens` used."""
        return f"{self.tag}:usage:{day}:top:{by}"

    def conversation(self, channel: str) -> ConversationKey:
        """The conversation of one of the server's channels or threads."""
        return ConversationKey(self.guild, channel)


def commands_hash(scope: str) -> str:
    """The digest of the slash commands last synced to a scope ("global" or a server id)."""
    return f"bot:commands:hash:{scope}"


def handled_message(message_id: int | str) -> str:
    """The claim that one process answers a Discord message (each is handled once)."""
    return f"bot:handled:{message_id}"


def server_prefs(guild: str) -> str:
    """A server's choices: a hash with a hash tag of its own (one key, one slot)."""
    return ServerKey(guild).prefs


@dataclass(frozen=True, slots=True)
class MemoryKeys:
    """The keys of one server's memory (or one DM's), under the server's own hash tag: the
    same slot as its `server_prefs`, where the memory's on/off switch lives."""

    guild: str

    def __post_init__(self) -> None:
        """Refuse names that would break the hash tag."""
        _check_name("guild", self.guild)

    def _key(self, part: str) -> str:
        """One key of this memory, under the server's own tag."""
        return f"{ServerKey(self.guild).tag}:memory:{part}"

    @property
    def facts(self) -> str:
        """Hash: fact id -> the fact's JSON."""
        return self._key("facts")

    @property
    def order(self) -> str:
        """Sorted set of fact ids by age (the score is the id), oldest first out."""
        return self._key("order")

    @property
    def sequence(self) -> str:
        """Counter that numbers the facts; ids are never reused."""
        return self._key("seq")

    @property
    def version(self) -> str:
        """Counter bumped by every change, so a process knows when its copy is stale."""
        return self._key("version")

    @property
    def switch(self) -> str:
        """The server's prefs hash, which holds the memory's on/off switch."""
        return server_prefs(self.guild)


def server_memory(guild: str) -> MemoryKeys:
    """The memory keys of a server (or of a DM's own place)."""
    return MemoryKeys(guild)


def process_alive(process_id: str) -> str:
    """The heartbeat of one bot process: it exists while the process lives (a short TTL)."""
    return f"bot:process:{process_id}:alive"


def shard_lease(shard_count: int, shard: int) -> str:
    """The lease of one Discord shard: the id of the one process that runs it now."""
    return f"bot:shard:{shard_count}:{shard}"


def process_inbox(process_id: str) -> str:
    """The list of control messages (Stop, Regenerate) sent to one process."""
    return f"bot:process:{process_id}:inbox"


def control_reply(request_id: str) -> str:
    """The list one control message's answer is pushed to."""
    return f"bot:control:reply:{request_id}"
