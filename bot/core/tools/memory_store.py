"""The server memory: short facts members told the bot, one memory per server, in Redis.

Each fact records who told it, when, where (channel, parent channel, thread kind) and whether
that place was public at that moment. What was said in private stays private, even if the
channel later opens up:

- `recall` at a place hears the server's public facts, plus the private facts of that channel,
  of its parent when asked from one of its threads, or of that private thread itself;
- a viewer (the /memory listing) sees the public facts, the private facts of channels they can
  view now, and a private thread's facts only if they told them or have Manage Threads (and can
  view the thread's channel);
- a DM is a place of its own (`Place.dm`): its facts live in its own memory, never a server's.

Keys live under the server's hash tag (`keys.server_memory`): a hash of facts by id, a sorted
set by age (past `max_facts` the oldest go), an id counter and a version counter. Every change
bumps the version; each process keeps the decoded facts and their word index per server and,
when the version moved, reads the ids and only the facts it lacks (facts never change), so a
recall costs one GET and the scoring, or a few more reads after a change.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, cast

from bot.core.keys import MemoryKeys, server_memory
from bot.core.redis_client import RedisClient, register_script
from bot.core.tools.context import Caller, Place, ThreadKind
from bot.core.tools.ranking import Index, words

log = logging.getLogger(__name__)

FACT_MAX_CHARS = 300
RECALL_LIMIT = 8
DEFAULT_MAX_FACTS = 500
PAGE_SIZE = 10
SCHEMA_VERSION = 1
_CACHED_SERVERS = 256
SWITCH_FIELD = "memory"
"""The field of the server's prefs hash that turns its memory on ("on") or off."""

ForgetOutcome = Literal["forgotten", "missing", "not_yours"]

_REMEMBER_LUA = """
local id = redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[1], id, ARGV[2])
redis.call('ZADD', KEYS[2], id, id)
local excess = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[1])
if excess > 0 then
  local old = redis.call('ZPOPMIN', KEYS[2], excess)
  for i = 1, #old, 2 do
    redis.call('HDEL', KEYS[1], old[i])
  end
end
redis.call('INCR', KEYS[4])
return id
"""

_FORGET_LUA = """
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('INCR', KEYS[3])
return 1
"""

_CLEAR_LUA = """
local count = redis.call('HLEN', KEYS[1])
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('INCR', KEYS[3])
return count
"""


@dataclass(frozen=True, slots=True)
class Fact:
    """One remembered fact: what, who told it, when, where, and who may hear it."""

    id: str
    text: str
    by_name: str
    by_id: str
    at: float
    channel: str
    parent: str | None = None
    thread: ThreadKind | None = None
    public: bool = False
    scope: str = ""

    @property
    def told_at(self) -> str:
        """When it was told, as "2025-01-31 14:05 UTC"."""
        return datetime.fromtimestamp(self.at, UTC).strftime("%Y-%m-%d %H:%M UTC")

    @property
    def where(self) -> str:
        """Where it was told, for a listing: the channel, and a thread's kind and parent."""
        if self.thread and self.parent:
            return f"{self.thread} thread {self.channel} of channel {self.parent}"
        return f"channel {self.channel}"

    @property
    def visibility(self) -> str:
        """Who may hear it, for a listing."""
        if self.public:
            return "public"
        if self.thread == "private":
            return f"private to thread {self.scope}"
        return f"private to channel {self.scope}"


@dataclass(frozen=True, slots=True)
class Viewer:
    """Someone looking at a memory (the /memory listing): who, which channels and threads they
    can view now, and their rights."""

    user_id: str
    channels: frozenset[str]
    manage_threads: bool = False
    manage_server: bool = False


@dataclass(frozen=True, slots=True)
class FactPage:
    """One page of a listing, newest first; `page` counts from 0."""

    facts: list[Fact]
    page: int
    pages: int
    total: int


def heard_at(fact: Fact, place: Place) -> bool:
    """Whether a fact may be recalled at a place (see the module docstring)."""
    return fact.public or fact.scope in place.reach


def seen_by(fact: Fact, viewer: Viewer) -> bool:
    """Whether a viewer may see a fact in a listing (see the module docstring)."""
    if fact.public:
        return True
    if fact.thread == "private":
        if fact.by_id == viewer.user_id:
            return True
        return viewer.manage_threads and bool({fact.channel, fact.parent} & viewer.channels)
    return fact.scope in viewer.channels


def may_forget(fact: Fact, user_id: str, *, manage_server: bool) -> bool:
    """Whether someone may make the bot forget a fact: their own, or any with Manage Server."""
    return manage_server or fact.by_id == user_id


def encode_fact(fact: Fact) -> str:
    """The stored JSON of a fact (its id is the hash field, not part of it)."""
    record: dict[str, Any] = {
        "v": SCHEMA_VERSION,
        "text": fact.text,
        "by": fact.by_name,
        "by_id": fact.by_id,
        "at": fact.at,
        "channel": fact.channel,
        "parent": fact.parent,
        "thread": fact.thread,
        "public": fact.public,
        "scope": fact.scope,
    }
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def decode_fact(fact_id: str, raw: bytes | str) -> Fact | None:
    """The fact a stored JSON holds, or None (logged) when it cannot be read."""
    try:
        record = json.loads(raw)
        if record.get("v") != SCHEMA_VERSION:
            raise ValueError(f"unknown schema version {record.get('v')!r}")
        thread = record.get("thread")
        if thread not in (None, "public", "private"):
            raise ValueError(f"unknown thread kind {thread!r}")
        return Fact(
            id=fact_id,
            text=str(record["text"]),
            by_name=str(record["by"]),
            by_id=str(record["by_id"]),
            at=float(record["at"]),
            channel=str(record["channel"]),
            parent=None if record.get("parent") is None else str(record["parent"]),
            thread=cast(ThreadKind | None, thread),
            public=record.get("public") is True,
            scope=str(record["scope"]),
        )
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        log.warning("Skipped memory fact %s: %s", fact_id, error)
        return None


def _text(value: bytes | str) -> str:
    """A stored string, whatever decode_responses the client uses."""
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def fact_id_of(value: str) -> str:
    """A fact id as people and models write it ("12", "#12", " 12 "), or "" if it is none."""
    cleaned = value.strip().removeprefix("#").strip()
    return cleaned if cleaned.isdecimal() and cleaned.isascii() else ""


class _Copy:
    """This process's copy of one server's facts with their word index, as of a version.

    Facts never change once told, so a copy catches up by the ids alone: it drops the ids that
    are gone and reads only the new ones."""

    def __init__(self) -> None:
        self.version = -1
        self.facts: dict[int, Fact] = {}
        self.index = Index()
        self._ordered: list[Fact] | None = None

    def ordered(self) -> list[Fact]:
        """The facts, oldest first."""
        if self._ordered is None:
            self._ordered = [self.facts[n] for n in sorted(self.facts)]
        return self._ordered

    def catch_up(self, version: int, ids: set[int], new: Sequence[Fact]) -> None:
        """Become the memory as of `version`: exactly `ids`, the missing ones from `new`."""
        for number in [n for n in self.facts if n not in ids]:
            del self.facts[number]
            self.index.remove(number)
        for fact in new:
            number = int(fact.id)
            if number in ids and number not in self.facts:
                self.facts[number] = fact
                self.index.add(number, _document(fact))
        self.version = version
        self._ordered = None


class MemoryStore:
    """Every server's memory: remember, recall, list, search, forget, clear, and the switch."""

    def __init__(
        self,
        redis: RedisClient,
        *,
        max_facts: int = DEFAULT_MAX_FACTS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_facts < 1:
            raise ValueError("max_facts must be at least 1.")
        self._redis = redis
        self.max_facts = max_facts
        self._clock = clock
        self._remember = register_script(redis, _REMEMBER_LUA)
        self._forget = register_script(redis, _FORGET_LUA)
        self._clear = register_script(redis, _CLEAR_LUA)
        self._copies: OrderedDict[str, _Copy] = OrderedDict()

    async def remember(self, place: Place, teller: Caller, text: str) -> Fact:
        """Keep a fact told at a place; past `max_facts` the oldest go. Returns it with its id."""
        cleaned = " ".join(text.split())
        if not cleaned:
            raise ValueError("A fact needs some text.")
        if len(cleaned) > FACT_MAX_CHARS:
            raise ValueError(f"A fact is at most {FACT_MAX_CHARS} characters, not {len(cleaned)}.")
        fact = Fact(
            id="",
            text=cleaned,
            by_name=teller.name,
            by_id=teller.user_id,
            at=self._clock(),
            channel=place.channel,
            parent=place.parent if place.thread else None,
            thread=place.thread,
            public=place.is_public,
            scope=place.scope,
        )
        keys = server_memory(place.guild)
        args: list[int | str] = [self.max_facts, encode_fact(fact)]
        new_id = await self._remember(keys=_write_keys(keys), args=args)
        return dataclasses.replace(fact, id=str(int(new_id)))

    async def facts(self, guild: str) -> list[Fact]:
        """Every fact of a server, oldest first (the owner's view: no filtering)."""
        return list((await self._current(guild)).ordered())

    async def recall(self, place: Place, query: str, *, limit: int = RECALL_LIMIT) -> list[Fact]:
        """The facts that may be heard at a place, most relevant to the query first; a query
        without searchable words gives the newest."""
        return await self._ranked(place.guild, query, lambda f: heard_at(f, place), limit)

    async def search(
        self, guild: str, viewer: Viewer, query: str, *, limit: int = RECALL_LIMIT
    ) -> list[Fact]:
        """The facts a viewer may see, most relevant to the query first."""
        return await self._ranked(guild, query, lambda f: seen_by(f, viewer), limit)

    async def page(
        self, guild: str, viewer: Viewer, page: int = 0, *, per_page: int = PAGE_SIZE
    ) -> FactPage:
        """A page of the facts a viewer may see, newest first (past the end: the last page)."""
        visible = [
            f for f in reversed((await self._current(guild)).ordered()) if seen_by(f, viewer)
        ]
        pages = max(1, -(-len(visible) // per_page))
        page = min(max(page, 0), pages - 1)
        chosen = visible[page * per_page : (page + 1) * per_page]
        return FactPage(chosen, page=page, pages=pages, total=len(visible))

    async def find(self, guild: str, fact_id: str) -> Fact | None:
        """The fact with this id in a server's memory, if it is there."""
        clean = fact_id_of(fact_id)
        if not clean:
            return None
        raw = await self._redis.hget(server_memory(guild).facts, clean)  # type: ignore[misc]
        return None if raw is None else decode_fact(clean, raw)

    async def forget_at(self, place: Place, caller: Caller, fact_id: str) -> ForgetOutcome:
        """Forget a fact on behalf of someone at a place: only one heard there, and their own
        unless they have Manage Server."""
        fact = await self.find(place.guild, fact_id)
        if fact is None or not heard_at(fact, place):
            return "missing"
        if not may_forget(fact, caller.user_id, manage_server=caller.manage_server):
            return "not_yours"
        return await self._delete(place.guild, fact.id)

    async def forget_as(self, guild: str, viewer: Viewer, fact_id: str) -> ForgetOutcome:
        """Forget a fact on behalf of a viewer: only one they can see, and their own unless they
        have Manage Server."""
        fact = await self.find(guild, fact_id)
        if fact is None or not seen_by(fact, viewer):
            return "missing"
        if not may_forget(fact, viewer.user_id, manage_server=viewer.manage_server):
            return "not_yours"
        return await self._delete(guild, fact.id)

    async def forget_teller(self, guild: str, user_id: str) -> int:
        """Forget every fact a member told in a server (/forget); how many there were."""
        told = [fact for fact in await self.facts(guild) if fact.by_id == user_id]
        outcomes = [await self._delete(guild, fact.id) for fact in told]
        return outcomes.count("forgotten")

    async def clear(self, guild: str) -> int:
        """Forget every fact of a server; how many there were."""
        keys = server_memory(guild)
        count = await self._clear(keys=[keys.facts, keys.order, keys.version])
        return int(count)

    async def enabled(self, guild: str) -> bool:
        """Whether the server's own switch turns its memory on (off until someone turns it on)."""
        value = await self._redis.hget(server_memory(guild).switch, SWITCH_FIELD)  # type: ignore[misc]
        return value is not None and _text(value) == "on"

    async def set_enabled(self, guild: str, on: bool) -> None:
        """Turn a server's memory on or off (its facts stay either way)."""
        switch = server_memory(guild).switch
        await self._redis.hset(switch, SWITCH_FIELD, "on" if on else "off")  # type: ignore[misc]

    async def _delete(self, guild: str, fact_id: str) -> ForgetOutcome:
        """Remove one fact by id."""
        keys = server_memory(guild)
        removed = await self._forget(keys=[keys.facts, keys.order, keys.version], args=[fact_id])
        return "forgotten" if int(removed) else "missing"

    async def _ranked(
        self, guild: str, query: str, allowed: Callable[[Fact], bool], limit: int
    ) -> list[Fact]:
        """The allowed facts best matching the query, or the newest when it has no words."""
        copy = await self._current(guild)
        facts = copy.facts
        ranked = copy.index.rank(query, lambda n: allowed(facts[n]), limit)
        if ranked or _has_words(query):
            return [facts[n] for n in ranked]
        return [f for f in reversed(copy.ordered()) if allowed(f)][:limit]

    async def _current(self, guild: str) -> _Copy:
        """This process's copy of the server's facts, caught up when the version moved: one GET
        when nothing changed, else the ids and the new facts only."""
        keys = server_memory(guild)
        copy = self._copies.get(guild) or _Copy()
        self._copies[guild] = copy
        self._copies.move_to_end(guild)
        while len(self._copies) > _CACHED_SERVERS:
            self._copies.popitem(last=False)
        if int(await self._redis.get(keys.version) or 0) == copy.version:
            return copy
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.get(keys.version)
            pipe.zrange(keys.order, 0, -1)
            raw_version, raw_ids = await pipe.execute()
        ids = {int(raw) for raw in raw_ids}
        missing = sorted(n for n in ids if n not in copy.facts)
        new: list[Fact] = []
        if missing:
            raws = await self._redis.hmget(keys.facts, missing)  # type: ignore[misc]
            new = [
                fact
                for number, raw in zip(missing, raws, strict=True)
                if raw is not None and (fact := decode_fact(str(number), raw)) is not None
            ]
        copy.catch_up(int(raw_version or 0), ids, new)
        return copy


def _document(fact: Fact) -> str:
    """What a fact is searched by: its text and who told it."""
    return f"{fact.text} {fact.by_name}"


def _has_words(query: str) -> bool:
    """Whether a query has searchable words."""
    return bool(words(query))


def _write_keys(keys: MemoryKeys) -> list[str]:
    """The keys the remember script writes, in its KEYS order."""
    return [keys.facts, keys.order, keys.sequence, keys.version]


def describe(facts: Sequence[Fact]) -> list[dict[str, Any]]:
    """Facts as the data a tool output quotes: id, the statement, who told it and when."""
    return [
        {"id": fact.id, "statement": fact.text, "told_by": fact.by_name, "told_at": fact.told_at}
        for fact in facts
    ]
