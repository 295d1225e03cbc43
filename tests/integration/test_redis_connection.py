"""The bot's Redis client: a server that stops answering must not hang a command forever."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.config import load_settings
from bot.wiring import open_redis
from tests.support.redis_proxy import RedisProxy
from tests.support.redis_server import RedisServer

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
