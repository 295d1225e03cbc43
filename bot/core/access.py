"""Who may use the assistant in a server: the channels where it answers and the roles allowed.

Both rules are sets of platform ids under the server's hash tag (`ServerKey.access_channels`,
`ServerKey.access_roles`); an empty set allows all, which is the default. They are checked
inside the limits script (`UsageLimits.check`), so an answer costs no extra round trip; this
module only reads and changes them (owner commands, /settings).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from bot.core.keys import ServerKey
from bot.core.redis_client import RedisClient

RuleName = Literal["channels", "roles"]
MAX_ENTRIES: Final = 100
"""At most this many channels or roles per rule (one script call checks them all)."""


class AccessError(ValueError):
    """A change the rules do not take; the message is one sentence for the user."""


@dataclass(frozen=True, slots=True)
class Access:
    """A server's rules: the allowed channel and role ids, sorted (empty: all are allowed)."""

    channels: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()


def _text(value: bytes | str) -> str:
    """A Redis reply as str, whatever decode_responses the client uses."""
    return value.decode() if isinstance(value, bytes) else value


def _sorted_ids(raw: Sequence[bytes | str] | set[bytes | str]) -> tuple[str, ...]:
    """Ids sorted as numbers where they are numbers, so they list in creation order."""
    ids = [_text(value) for value in raw]
    return tuple(sorted(ids, key=lambda i: (len(i), i)))


class AccessRules:
    """Reads and changes the servers' access rules."""

    def __init__(self, redis: RedisClient) -> None:
        self._redis = redis

    @staticmethod
    def _key(guild: str, rule: RuleName) -> str:
        """The set of one rule."""
        server = ServerKey(guild)
        return server.access_channels if rule == "channels" else server.access_roles

    async def read(self, guild: str) -> Access:
        """The server's rules."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.smembers(self._key(guild, "channels"))
            pipe.smembers(self._key(guild, "roles"))
            channels, roles = await pipe.execute()
        return Access(channels=_sorted_ids(channels), roles=_sorted_ids(roles))

    async def add(self, guild: str, rule: RuleName, entry: str) -> bool:
        """Allow one more channel or role; False when it was allowed already."""
        if not entry.isdigit():
            raise AccessError("That is not a channel or role of this server.")
        key = self._key(guild, rule)
        if await self._redis.scard(key) >= MAX_ENTRIES:  # type: ignore[misc]
            raise AccessError(f"A server can list at most {MAX_ENTRIES} {rule}.")
        return bool(await self._redis.sadd(key, entry))  # type: ignore[misc]

    async def remove(self, guild: str, rule: RuleName, entry: str) -> bool:
        """Take a channel or role off the list; False when it was not on it."""
        return bool(await self._redis.srem(self._key(guild, rule), entry))  # type: ignore[misc]

    async def clear(self, guild: str, rule: RuleName) -> None:
        """Empty the list: every channel (or every member) is allowed again."""
        await self._redis.delete(self._key(guild, rule))
