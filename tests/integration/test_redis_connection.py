"""The bot's Redis client: a server that stops answering must not hang a command forever; a
cluster client with REDIS_CLUSTER; a mismatch between the two stops start-up in one line."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio.cluster import RedisCluster as ClusterClient
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.config import load_settings
from bot.core.events import HistoryItem
from bot.core.keys import ConversationKey
from bot.wiring import StartupError, make_store, open_redis
from tests.support.redis_cluster import RedisCluster
from tests.support.redis_proxy import RedisProxy
from tests.support.redis_server import RedisServer, free_port

GUARD_SECONDS = 20  # only stops a broken test from hanging; never reached when things work


@pytest.fixture
async def proxy(redis_server: RedisServer) -> AsyncIterator[RedisProxy]:
    """A silencing proxy in front of the test redis-server."""
    started = RedisProxy(redis_server.port)
    await started.start()
    try:
        yield started
    finally:
        await started.stop()


async def test_a_silent_redis_times_out_instead_of_hanging(proxy: RedisProxy) -> None:
    """A command to a Redis that went silent mid-connection fails with a timeout."""
    settings = load_settings(env_file=None, redis_url=proxy.url)
    async with asyncio.timeout(GUARD_SECONDS), open_redis(settings, timeout_seconds=0.2) as redis:
        await redis.set("probe", "1")
        proxy.silent.set()
        with pytest.raises(RedisTimeoutError):
            await redis.get("probe")
        assert proxy.swallowed.is_set()


async def test_redis_cluster_true_gives_a_cluster_client_that_reaches_every_slot(
    redis_cluster: RedisCluster,
) -> None:
    """With REDIS_CLUSTER=true the bot's client follows the cluster: conversations whose keys
    live on different masters are all written and read back."""
    settings = load_settings(env_file=None, redis_url=redis_cluster.url, redis_cluster=True)
    keys = [ConversationKey("1", str(channel)) for channel in range(12)]
    async with open_redis(settings) as redis:
        assert isinstance(redis, ClusterClient)
        nodes = {redis.get_node_from_key(key.items).name for key in keys}
        assert len(nodes) == 3  # the keys really are spread over the masters
        store = make_store(settings, redis)
        for key in keys:
            await store.append(key, [HistoryItem(role="user", text=str(key), speaker="A")])
        for key in keys:
            assert [item.text for item in await store.load(key)] == [str(key)]
        await redis.delete(*(key.items for key in keys))


async def test_a_cluster_node_without_redis_cluster_stops_start_up_in_one_line(
    redis_cluster: RedisCluster,
) -> None:
    """A cluster node at REDIS_URL without REDIS_CLUSTER is refused before any MOVED error."""
    settings = load_settings(env_file=None, redis_url=redis_cluster.url)
    with pytest.raises(StartupError) as caught:
        async with open_redis(settings):
            pass
    port = redis_cluster.ports[0]
    assert str(caught.value) == (
        f"Redis at 127.0.0.1:{port} is a cluster node: set REDIS_CLUSTER=true to use the cluster."
    )


async def test_redis_cluster_true_on_a_single_server_stops_start_up_in_one_line(
    redis_server: RedisServer,
) -> None:
    """REDIS_CLUSTER=true with a single server at REDIS_URL says it is not a cluster."""
    settings = load_settings(env_file=None, redis_url=redis_server.url, redis_cluster=True)
    with pytest.raises(StartupError) as caught:
        async with open_redis(settings):
            pass
    assert str(caught.value) == (
        f"Redis at 127.0.0.1:{redis_server.port} is not a cluster: "
        "unset REDIS_CLUSTER for a single server."
    )


async def test_an_unreachable_cluster_stops_start_up_in_one_line() -> None:
    """REDIS_CLUSTER=true with nothing listening names the address in one line."""
    port = free_port()
    settings = load_settings(
        env_file=None, redis_url=f"redis://127.0.0.1:{port}/0", redis_cluster=True
    )
    with pytest.raises(StartupError) as caught:
        async with open_redis(settings, timeout_seconds=1):
            pass
    assert (
        str(caught.value)
        == f"Could not connect to Redis Cluster at 127.0.0.1:{port}: is it running?"
    )
