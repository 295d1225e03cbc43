"""Fixtures every layer of tests shares: a private redis-server and a clean client to it.

Tests marked `on_cluster` run twice: once on the session's redis-server ("single") and once on
its private 3-master Redis Cluster ("cluster"), through the same `redis_client` fixture.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio.cluster import RedisCluster as ClusterClient

from bot.core.redis_client import RedisClient
from tests.support.redis_cluster import RedisCluster
from tests.support.redis_server import RedisServer
from tests.support.redis_target import RedisTarget

BACKENDS = ("single", "cluster")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run the tests marked `on_cluster` on both backends."""
    marked = metafunc.definition.get_closest_marker("on_cluster") is not None
    if marked and "redis_backend" in metafunc.fixturenames:
        metafunc.parametrize("redis_backend", BACKENDS, indirect=True)


@pytest.fixture
def redis_backend(request: pytest.FixtureRequest) -> str:
    """Which Redis this test talks to: "single", or "cluster" for its `on_cluster` run."""
    backend: str = getattr(request, "param", "single")
    return backend


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server of the test session's own, never the REDIS_URL of a .env."""
    server = RedisServer(Path(tmp_path_factory.mktemp("redis")))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A 3-master Redis Cluster of the session's own, started when a test first needs it."""
    cluster = RedisCluster(Path(tmp_path_factory.mktemp("redis-cluster")))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def redis_target(redis_backend: str, request: pytest.FixtureRequest) -> RedisTarget:
    """Where this test's Redis is: the single server, or the cluster for an `on_cluster` run."""
    if redis_backend == "cluster":
        cluster: RedisCluster = request.getfixturevalue("redis_cluster")
        return RedisTarget(cluster.url, cluster=True)
    server: RedisServer = request.getfixturevalue("redis_server")
    if server.proc is None:
        server.start()
    return RedisTarget(server.url, cluster=False)


@pytest.fixture
async def redis_client(redis_target: RedisTarget) -> AsyncIterator[RedisClient]:
    """A client to this test's Redis, with every key and loaded script removed first."""
    client = redis_target.connect()
    try:
        if isinstance(client, ClusterClient):
            await client.flushall()  # FLUSHALL and SCRIPT FLUSH go to every master
            await client.script_flush()
        else:
            await client.flushdb()
        yield client
    finally:
        await client.aclose()
