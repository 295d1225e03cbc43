"""Where a test's Redis is (one server or a cluster), and how to reach it like the bot does."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from bot.core.redis_client import RedisClient


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """The URL of a test Redis, and whether it is a cluster (`REDIS_CLUSTER=true`)."""

    url: str
    cluster: bool

    def connect(self) -> RedisClient:
        """A new client of the right kind; the caller closes it."""
        if self.cluster:
            return RedisCluster.from_url(self.url)
        return aioredis.Redis.from_url(self.url)


async def all_keys(client: RedisClient) -> set[str]:
    """Every key stored, on one server or on every master of a cluster."""
    if isinstance(client, RedisCluster):
        names = await client.keys("*", target_nodes=RedisCluster.PRIMARIES)
    else:
        names = await client.keys("*")
    return {name.decode() for name in names}
