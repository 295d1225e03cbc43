"""Discord shards across processes: which shard a server is on, and leases in Redis so that each
shard is run by exactly one process at a time.

A process takes the lease of each of its shards (SET NX PX through a script that also renews,
like the turn lock) in ascending order, so two processes with overlapping shards cannot each
hold a part and wait for the other. Until it holds all of them it is a hot standby: connected to
Redis and logged in to Discord, but not to the gateway. The holder renews every `renew_every`
seconds; one that dies stops renewing, its leases expire after `ttl_seconds`, and a standby
polling every `poll_every` seconds takes them over. A holder that finds one of its leases held
by another process (it was cut off from Redis for longer than the TTL) must stop serving it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

from redis.exceptions import RedisError

from bot.core.keys import shard_lease
from bot.core.process import ProcessIdentity
from bot.core.redis_client import RedisClient, register_script

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]

LEASE_TTL_SECONDS = 8.0
RENEW_EVERY_SECONDS = 2.0
POLL_EVERY_SECONDS = 1.0
"""A standby takes over at most TTL + one poll (about 9 s) after the holder's last renewal."""

_HOLD_LUA: Final = """
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if not current then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""

_RELEASE_LUA: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def shard_of(guild_id: int, shard_count: int) -> int:
    """The shard a server's events arrive on, as Discord computes it."""
    return (guild_id >> 22) % shard_count


class ShardLeases:
    """The leases of the shards one process runs: wait for them, keep them, give them back."""

    def __init__(
        self,
        redis: RedisClient,
        process: ProcessIdentity,
        *,
        shard_count: int,
        shard_ids: Sequence[int],
        ttl_seconds: float = LEASE_TTL_SECONDS,
        renew_every: float = RENEW_EVERY_SECONDS,
        poll_every: float = POLL_EVERY_SECONDS,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if not 0 < renew_every < ttl_seconds or not 0 < poll_every < ttl_seconds:
            raise ValueError("renew_every and poll_every must be above zero and below the TTL.")
        if not shard_ids or any(not 0 <= shard < shard_count for shard in shard_ids):
            raise ValueError("shard_ids must be shards from 0 to shard_count - 1.")
        self._redis = redis
        self.process = process
        self.shard_count = shard_count
        self.shard_ids = tuple(sorted(set(shard_ids)))
        self._ttl_ms = max(1, round(ttl_seconds * 1000))
        self._renew_every = renew_every
        self._poll_every = poll_every
        self._sleep = sleep
        self._hold_script = register_script(redis, _HOLD_LUA)
        self._release_script = register_script(redis, _RELEASE_LUA)
        self.held: set[int] = set()

    @property
    def standby(self) -> bool:
        """Whether this process still waits for some of its shards."""
        return len(self.held) < len(self.shard_ids)

    def serves(self, guild_id: int) -> bool:
        """Whether this process holds the shard of a server."""
        return shard_of(guild_id, self.shard_count) in self.held

    async def owner(self, shard: int) -> str | None:
        """The id of the process that holds a shard's lease, if any."""
        raw = await self._redis.get(shard_lease(self.shard_count, shard))
        return raw.decode() if isinstance(raw, bytes) else raw

    async def _hold(self, shard: int) -> bool:
        """Take the shard's lease if it is free, renew it if it is ours; False if another's."""
        key = shard_lease(self.shard_count, shard)
        held = bool(await self._hold_script(keys=[key], args=[self.process.id, self._ttl_ms]))
        if held:
            self.held.add(shard)
        else:
            self.held.discard(shard)
        return held

    async def acquire(self) -> None:
        """Wait, as a hot standby, until every lease is ours; taken in ascending order."""
        took_over = False
        for shard in self.shard_ids:
            reported = False
            while not await self._try(shard):
                took_over = True
                if not reported:
                    holder = await self._owner_or_unknown(shard)
                    log.info(
                        "Standby: shard %d of %d is run by process %s; taking over when it stops.",
                        shard,
                        self.shard_count,
                        holder,
                    )
                    reported = True
                await self._sleep(self._poll_every)
                await self._renew_held(below=shard)
        # Quiet on a plain start, so a start-up that fails later prints only its error line.
        log.log(
            logging.INFO if took_over else logging.DEBUG,
            "Holding shards %s of %d as process %s.",
            ",".join(map(str, self.shard_ids)),
            self.shard_count,
            self.process.id,
        )

    async def _try(self, shard: int) -> bool:
        """One attempt at a lease; a Redis failure counts as not yet."""
        try:
            return await self._hold(shard)
        except RedisError as exc:
            log.warning("Could not take the lease of shard %d: %s", shard, exc)
            return False

    async def _owner_or_unknown(self, shard: int) -> str:
        """Who holds a shard, for the standby's log line."""
        try:
            return await self.owner(shard) or "(none: it just expired)"
        except RedisError:
            return "(unknown: Redis failed)"

    async def _renew_held(self, *, below: int) -> None:
        """Keep the leases taken so far while waiting for the next one."""
        for shard in self.shard_ids:
            if shard < below:
                await self._try(shard)

    async def keep(self) -> int:
        """Renew every lease until one is found held by another process; returns that shard.

        A Redis failure is logged and tried again at the next renewal: while Redis is away no
        other process can take a lease either."""
        while True:
            await self._sleep(self._renew_every)
            for shard in self.shard_ids:
                try:
                    if not await self._hold(shard):
                        return shard
                except RedisError as exc:
                    log.warning("Could not renew the lease of shard %d: %s", shard, exc)

    async def release(self) -> None:
        """Give back every lease still ours (best effort: unreleased ones expire by themselves)."""
        for shard in sorted(self.held):
            try:
                await self._release_script(
                    keys=[shard_lease(self.shard_count, shard)], args=[self.process.id]
                )
            except RedisError as exc:
                log.warning("Could not release the lease of shard %d: %s", shard, exc)
        self.held.clear()
