"""The Redis client type the core takes: one server (`Redis`) or a Redis Cluster.

Every multi-key command and script of the core touches one hash tag (see `keys.py`), so the
same code runs on both; a pipeline that spans tags is never a transaction.
"""

from __future__ import annotations

from typing import TypeAlias

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript

RedisClient: TypeAlias = Redis | RedisCluster
"""A client of one Redis server or of a Redis Cluster (`REDIS_CLUSTER=true`)."""


def register_script(client: RedisClient, source: str) -> AsyncScript:
    """A Lua script called by its SHA on `client`; on a cluster each node loads it on first use."""
    # redis-py types the method's `self` as `Redis` only; RedisCluster has it too.
    return client.register_script(source)  # type: ignore[misc]
