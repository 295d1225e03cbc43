"""The bot's budget of Discord requests per second, shared by all its processes through Redis.

Discord allows 50 requests per second per bot, however many processes it runs. Every process's
`EditPacer` reserves each request's start in one Redis key with one script (one round trip): a
GCRA schedule, the "theoretical arrival time" of the next request, advanced by 1/rate per
reservation on Redis's own clock. A reservation says how long to wait before the request may
start; `burst` requests may start at once after a quiet spell, so at most rate + burst start in
any second. When Redis is slow or down, a process reserves from a local schedule of its own share
of the rate instead (its shards' share of all shards), so processes cut off together still stay
within the budget.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from typing import Final

from redis.exceptions import RedisError

from bot.core.keys import DISCORD_BUDGET
from bot.core.redis_client import RedisClient, register_script

log = logging.getLogger(__name__)

Clock = Callable[[], float]
REDIS_TIMEOUT_SECONDS = 0.25
"""How long a reservation may take in Redis before the local share is used for it."""

_RESERVE_LUA: Final = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local start = tat - tolerance
if start < now then start = now end
local next_tat = tat + interval
local ttl = math.ceil((next_tat - now) / 1000) + 1000
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX', ttl)
return string.format('%.0f', start - now)
"""


class LocalRequestBudget:
    """The same schedule kept in this process only: `rate` requests per second, `burst` at once."""

    def __init__(self, rate: float, *, burst: int = 1, clock: Clock = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate and burst must be positive.")
        self._interval = 1.0 / rate
        self._tolerance = (burst - 1) * self._interval
        self._clock = clock
        self._tat = -math.inf

    def reserve_now(self) -> float:
        """Reserve the next request; seconds until it may start."""
        now = self._clock()
        tat = max(self._tat, now)
        start = max(now, tat - self._tolerance)
        self._tat = tat + self._interval
        return start - now

    async def reserve(self) -> float:
        """Reserve the next request; seconds until it may start (the pacer's GlobalGate)."""
        return self.reserve_now()


class SharedRequestBudget:
    """`rate` requests per second for all processes of the bot, reserved in Redis."""

    def __init__(
        self,
        redis: RedisClient,
        *,
        rate: int,
        local_share: float,
        burst: int = 2,
        timeout_seconds: float = REDIS_TIMEOUT_SECONDS,
        clock: Clock = time.monotonic,
    ) -> None:
        """`local_share` (0 to 1) is this process's part of `rate` when Redis cannot answer."""
        if rate < 1 or burst < 1 or not 0 < local_share <= 1:
            raise ValueError("rate and burst must be positive and local_share in (0, 1].")
        interval_us = 1_000_000 / rate
        self._args = [f"{interval_us:.0f}", f"{(burst - 1) * interval_us:.0f}"]
        self._script = register_script(redis, _RESERVE_LUA)
        self._timeout = timeout_seconds
        self.fallback = LocalRequestBudget(rate * local_share, burst=1, clock=clock)
        self.using_fallback = False

    async def reserve(self) -> float:
        """Reserve the next request in the shared schedule; seconds until it may start."""
        try:
            async with asyncio.timeout(self._timeout):
                waited_us = await self._script(keys=[DISCORD_BUDGET], args=self._args)
        except (TimeoutError, RedisError, OSError) as exc:
            if not self.using_fallback:
                log.warning(
                    "Discord request budget: Redis failed (%s); pacing on this process's "
                    "share until it answers again.",
                    type(exc).__name__,
                )
                self.using_fallback = True
            return self.fallback.reserve_now()
        if self.using_fallback:
            log.info("Discord request budget: Redis answers again; pacing on the shared budget.")
            self.using_fallback = False
        return int(waited_us) / 1_000_000
