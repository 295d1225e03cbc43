"""A server's stored data as a whole: forgetting one member everywhere, deleting all of it.

Both start from the server's index of conversations (`ServerKey.conversations`, kept by
`HistoryStore` and `Preferences`) and its index of members with limit or usage data
(`ServerKey.users`, kept by `UsageLimits`), never from a scan of the keyspace. Each Redis call
touches one hash tag: one conversation, or the server's own keys.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from bot.core.history import HistoryStore, Removed
from bot.core.inflight import parse_index_member
from bot.core.keys import (
    CONVERSATION_DATA,
    INFLIGHT_INDEX,
    ConversationKey,
    ServerKey,
    server_memory,
)
from bot.core.limits import USAGE_TTL_SECONDS, Clock, utc_day, utc_month
from bot.core.redis_client import RedisClient

DAY_SECONDS: Final = 24 * 3600
_DELETE_BATCH: Final = 500


@dataclass(frozen=True, slots=True)
class Forgotten:
    """What forgetting a member removed: items in all, and in how many conversations."""

    removed: Removed
    conversations: int


def _text(value: bytes | str) -> str:
    """A Redis reply as str, whatever decode_responses the client uses."""
    return value.decode() if isinstance(value, bytes) else value


class ServerData:
    """Finds, forgets from and deletes the data the bot keeps for one server."""

    def __init__(
        self,
        redis: RedisClient,
        store: HistoryStore,
        *,
        clock: Clock = time.time,
    ) -> None:
        self._redis = redis
        self._store = store
        self._clock = clock

    async def conversations(self, guild: str) -> list[ConversationKey]:
        """The server's conversations that may hold data (history or settings of their own)."""
        server = ServerKey(guild)
        channels = await self._redis.zrange(server.conversations, 0, -1)
        return [server.conversation(_text(channel)) for channel in channels]

    async def forget_member(self, guild: str, author: str) -> Forgotten:
        """Remove a member's messages (and the answers left answering nothing) everywhere."""
        keys = await self.conversations(guild)
        counts = await self._store.forget_author_in(keys, author)
        total = sum(counts, Removed())
        return Forgotten(removed=total, conversations=sum(1 for c in counts if c.total))

    async def delete_server(self, guild: str) -> int:
        """Delete every key the bot keeps for a server; returns how many existed."""
        server = ServerKey(guild)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zrange(server.conversations, 0, -1)
            pipe.zrange(server.users, 0, -1)
            channels, users = await pipe.execute()
        conversation_keys = [
            [server.conversation(_text(channel)).sub(name) for name in CONVERSATION_DATA]
            for channel in channels
        ]
        server_keys = self._server_keys(server, [_text(user) for user in users])
        batches = [
            *conversation_keys,
            *(
                server_keys[i : i + _DELETE_BATCH]
                for i in range(0, len(server_keys), _DELETE_BATCH)
            ),
        ]
        streaming = await self._inflight_of(guild)
        async with self._redis.pipeline(transaction=False) as pipe:
            for batch in batches:
                pipe.delete(*batch)  # one hash tag per call
            for member, record in streaming:
                pipe.delete(record)
                pipe.srem(INFLIGHT_INDEX, member)
            deleted = await pipe.execute()
        return sum(int(count) for count in deleted[: len(batches)])

    async def _inflight_of(self, guild: str) -> list[tuple[bytes | str, str]]:
        """The in-flight records of the server's answers (index entry, record key): a reply in
        a server the bot has left cannot be finished, so its record goes too."""
        members = await self._redis.smembers(INFLIGHT_INDEX)  # type: ignore[misc]
        found = []
        for member in members:
            parsed = parse_index_member(member)
            if parsed is not None and parsed[0].guild == guild:
                key, answer_id, _ = parsed
                found.append((member, key.inflight(answer_id)))
        return found

    def _server_keys(self, server: ServerKey, users: Sequence[str]) -> list[str]:
        """The server's own keys: choices, limits, access rules, indexes, its memory, and usage
        of every day still kept."""
        now = self._clock()
        kept_days = USAGE_TTL_SECONDS // DAY_SECONDS + 1
        days = [utc_day(now - n * DAY_SECONDS) for n in range(kept_days + 1)]
        months = list(dict.fromkeys(utc_month(now - n * DAY_SECONDS) for n in range(kept_days + 1)))
        keys = [server.prefs, server.limits, server.access_channels, server.access_roles]
        for period in [*days, *months]:
            keys.append(server.usage(period))
            keys += [server.usage(period, user) for user in users]
        for day in days:
            keys += [server.top(day, "cost"), server.top(day, "tokens")]
        keys += [server.rate(user) for user in users]
        memory = server_memory(server.guild)
        keys += [memory.facts, memory.order, memory.sequence, memory.version]
        return [*keys, server.users, server.conversations]
