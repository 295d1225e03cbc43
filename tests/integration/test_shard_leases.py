"""Shard leases on a real redis-server: one holder per shard, a standby that takes over when
the holder stops renewing, a holder that notices losing its lease, ascending order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from bot.core.keys import shard_lease
from bot.core.process import ProcessIdentity
from bot.core.shards import ShardLeases, shard_of
from tests.support.redis_server import RedisServer

GUARD_SECONDS = 30  # only stops a broken test from hanging


def leases(client: aioredis.Redis, name: str, ids: tuple[int, ...], **timing: float) -> ShardLeases:
    """Leases of shards `ids` of 4 for a process called `name`, on fast test timings."""
    options = {"ttl_seconds": 0.6, "renew_every": 0.1, "poll_every": 0.05} | timing
    return ShardLeases(client, ProcessIdentity(name), shard_count=4, shard_ids=ids, **options)


@pytest.fixture
async def other_client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    """A second connection, as a second process would have."""
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        yield client
    finally:
        await client.aclose()


def test_shard_of_follows_discords_formula() -> None:
    """(guild_id >> 22) % shard_count."""
    guild = (7 << 22) | 12345
    assert shard_of(guild, 4) == 3
    assert shard_of(guild, 1) == 0


async def test_second_process_waits_until_the_holder_dies(
    redis_client: aioredis.Redis, other_client: aioredis.Redis
) -> None:
    """A standby for the same shards waits while the holder renews, and takes over once it
    stops (as a killed process does: no release, the lease expires)."""
    holder = leases(redis_client, "holder", (0, 1))
    standby = leases(other_client, "standby", (0, 1))
    await holder.acquire()
    keeping = asyncio.create_task(holder.keep())
    waiting = asyncio.create_task(standby.acquire())
    await asyncio.sleep(0)
    # While the holder renews, more than a TTL passes and the standby still waits.
    for _ in range(12):
        await asyncio.wait({waiting}, timeout=0.1)
        assert not waiting.done()
    assert standby.standby
    assert await standby.owner(0) == "holder"
    keeping.cancel()  # the holder dies: no release
    async with asyncio.timeout(GUARD_SECONDS):
        await waiting
    assert standby.held == {0, 1}
    assert not standby.standby
    assert await redis_client.get(shard_lease(4, 1)) == b"standby"


async def test_holder_learns_it_lost_a_lease(
    redis_client: aioredis.Redis, other_client: aioredis.Redis
) -> None:
    """When another process holds one of its leases (it was cut off past the TTL), keep()
    returns that shard so the process can stop serving it."""
    holder = leases(redis_client, "holder", (2,))
    await holder.acquire()
    await other_client.set(shard_lease(4, 2), "usurper")
    async with asyncio.timeout(GUARD_SECONDS):
        assert await holder.keep() == 2
    assert holder.held == set()


async def test_release_frees_the_shards_for_a_standby_at_once(
    redis_client: aioredis.Redis, other_client: aioredis.Redis
) -> None:
    """A clean stop gives the leases back; a standby with a long TTL gets them at its next poll."""
    holder = leases(redis_client, "holder", (0, 3), ttl_seconds=60)
    standby = leases(other_client, "standby", (3, 0), ttl_seconds=60)
    await holder.acquire()
    await holder.release()
    async with asyncio.timeout(GUARD_SECONDS):
        await standby.acquire()
    assert standby.shard_ids == (0, 3)
    assert await standby.owner(0) == "standby"


async def test_overlapping_processes_never_split_the_shards(
    redis_client: aioredis.Redis, other_client: aioredis.Redis
) -> None:
    """Two processes for shards (0, 1) and (1, 0) racing: one gets both, the other none (the
    ascending order means neither holds one half while waiting for the other)."""
    first = leases(redis_client, "first", (0, 1))
    second = leases(other_client, "second", (1, 0))
    tasks = [asyncio.create_task(first.acquire()), asyncio.create_task(second.acquire())]
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    winner, loser = (first, second) if tasks[0] in done else (second, first)
    assert winner.held == {0, 1}
    assert loser.held == set()
    for task in pending:
        task.cancel()


def test_bad_shard_ids_are_refused(redis_client: aioredis.Redis) -> None:
    """Shards outside 0..count-1, or none at all, are a ValueError."""
    with pytest.raises(ValueError, match="shard_ids"):
        leases(redis_client, "p", (4,))
    with pytest.raises(ValueError, match="shard_ids"):
        leases(redis_client, "p", ())
