"""Fixtures every layer of tests shares: a private redis-server and a clean client to it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.support.redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server of the test session's own, never the REDIS_URL of a .env."""
    server = RedisServer(Path(tmp_path_factory.mktemp("redis")))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    """A client to the session's redis-server, with the database emptied first."""
    if redis_server.proc is None:
        redis_server.start()
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=False)
    await client.flushdb()
    try:
        yield client
    finally:
        await client.aclose()
