"""The bot-wide Discord request budget on a real redis-server: processes share one schedule,
and a process that cannot reach Redis paces on its own share."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from bot.core.keys import DISCORD_BUDGET
from bot.core.request_budget import SharedRequestBudget
from tests.support.redis_server import RedisServer, free_port


@pytest.fixture
async def second_client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    """Another connection to the same server, as a second bot process would have."""
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        yield client
    finally:
        await client.aclose()


async def test_two_processes_share_one_schedule(
    redis_client: aioredis.Redis, second_client: aioredis.Redis
) -> None:
    """40 reservations made at once from two clients: the first second holds rate + burst of
    them, the rest are spread 1/rate apart after it."""
    budgets = [
        SharedRequestBudget(client, rate=10, burst=2, local_share=0.5, timeout_seconds=5)
        for client in (redis_client, second_client)
    ]
    delays = await asyncio.gather(*(budgets[n % 2].reserve() for n in range(40)))
    assert not any(budget.using_fallback for budget in budgets)
    ordered = sorted(delays)
    assert sum(1 for delay in ordered if delay < 1.0) <= 10 + 2
    assert ordered[-1] >= (40 - 2) / 10 - 0.5  # the last waits about 3.8 s
    assert await redis_client.pttl(DISCORD_BUDGET) > 0  # the key expires once idle


async def test_unreachable_redis_falls_back_to_the_local_share(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With Redis down, reservations come from this process's share of the rate (one line
    logged, not one per request)."""
    client = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")
    budget = SharedRequestBudget(client, rate=10, local_share=0.5, timeout_seconds=1)
    try:
        with caplog.at_level(logging.WARNING, logger="bot.core.request_budget"):
            delays = [await budget.reserve() for _ in range(3)]
    finally:
        await client.aclose()
    assert budget.using_fallback
    assert delays[0] == 0
    assert delays[2] == pytest.approx(2 * (1 / 5), abs=0.05)  # 5 per second: half of 10
    assert len([r for r in caplog.records if "Redis failed" in r.message]) == 1
