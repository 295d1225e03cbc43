"""One turn at a time per conversation: FIFO within a process, a Redis lock across processes.

Within a process, turns of one conversation queue on an `asyncio.Lock` (first in, first out
by arrival). The head of that queue then takes a Redis lock on `key.lock` (SET NX PX with a
random token), renews it while the turn runs, and deletes it afterwards only if it still holds
the token. A holder that dies stops renewing, so its lock expires by itself after the TTL: the
TTL is short (6 s, renewed every 2 s), so a process killed mid-answer holds its channel up for
a few seconds at most, also for its own successor after a restart.
Across processes, waiters poll with a short capped backoff, so their order is not guaranteed.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Final

from redis.exceptions import RedisError

from bot.core.keys import ConversationKey
from bot.core.redis_client import RedisClient, register_script

log = logging.getLogger(__name__)

LOCK_TTL_SECONDS: Final = 6.0
"""How long the lock of a holder that stopped renewing (a dead process) keeps others out."""
LOCK_RENEW_SECONDS: Final = 2.0
"""How often a holder renews it: two renewals may fail or be slow before it runs out."""

_RELEASE_LUA: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

_RENEW_LUA: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


class TurnLockTimeout(Exception):  # noqa: N818 - reads as what happened, like TimeoutError
    """A turn waited longer than allowed for the conversation's previous turns to finish."""

    def __init__(self, key: ConversationKey, waited: float) -> None:
        super().__init__(f"Waited {waited:g} s for the turn lock of {key} without getting it.")
        self.key = key
        self.waited = waited


@dataclass
class _LocalQueue:
    """The in-process queue of one conversation and how many tasks are in it."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    members: int = 0


class TurnLock:
    """Runs the turns of each conversation one at a time, across tasks and processes."""

    def __init__(
        self,
        redis: RedisClient,
        *,
        ttl_seconds: float = LOCK_TTL_SECONDS,
        renew_every: float = LOCK_RENEW_SECONDS,
        wait_timeout: float = 120,
        poll_interval: tuple[float, float] = (0.02, 0.25),
    ) -> None:
        if not 0 < renew_every < ttl_seconds:
            raise ValueError("renew_every must be above zero and below ttl_seconds.")
        if wait_timeout <= 0:
            raise ValueError("wait_timeout must be above zero.")
        self._redis = redis
        self._ttl_ms = max(1, round(ttl_seconds * 1000))
        self.renew_every = renew_every
        self.wait_timeout = wait_timeout
        self._poll_first, self._poll_cap = poll_interval
        self._queues: dict[ConversationKey, _LocalQueue] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._release_script = register_script(redis, _RELEASE_LUA)
        self._renew_script = register_script(redis, _RENEW_LUA)

    def queued(self, key: ConversationKey) -> int:
        """How many turns of this conversation hold or wait for the lock in this process."""
        queue = self._queues.get(key)
        return queue.members if queue else 0

    @asynccontextmanager
    async def hold(
        self, key: ConversationKey, *, wait_timeout: float | None = None
    ) -> AsyncIterator[None]:
        """Wait for the conversation's turn (TurnLockTimeout if too long), hold it inside."""
        queue = self._join(key)
        try:
            limit = self.wait_timeout if wait_timeout is None else wait_timeout
            token = await self._acquire(key, queue, limit)
            renewal = asyncio.create_task(self._keep_alive(key, token))
            try:
                yield
            finally:
                renewal.cancel()
                try:
                    await self._release(key, token)
                finally:
                    queue.lock.release()
        finally:
            self._leave(key, queue)

    def _join(self, key: ConversationKey) -> _LocalQueue:
        """Enter the conversation's in-process queue, making it if it is new."""
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = _LocalQueue()
        queue.members += 1
        return queue

    def _leave(self, key: ConversationKey, queue: _LocalQueue) -> None:
        """Leave the queue, forgetting it once nobody is in it."""
        queue.members -= 1
        if queue.members == 0:
            del self._queues[key]

    async def _acquire(self, key: ConversationKey, queue: _LocalQueue, limit: float) -> str:
        """Take the local lock, then the Redis lock; on any failure hold neither."""
        token = secrets.token_hex(16)
        deadline = asyncio.timeout(limit)
        try:
            async with deadline:
                await queue.lock.acquire()
                try:
                    await self._take_redis_lock(key, token)
                except BaseException:
                    queue.lock.release()
                    raise
        except TimeoutError:
            if deadline.expired():
                raise TurnLockTimeout(key, limit) from None
            raise
        return token

    async def _take_redis_lock(self, key: ConversationKey, token: str) -> None:
        """Poll SET NX until the lock is ours; if interrupted, undo a SET that may have landed."""
        delay = self._poll_first
        try:
            while not await self._redis.set(key.lock, token, nx=True, px=self._ttl_ms):
                if delay == self._poll_first:
                    log.debug("Waiting for the turn lock of %s held by another process", key)
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, self._poll_cap)
        except BaseException:
            await self._release(key, token)
            raise

    async def _keep_alive(self, key: ConversationKey, token: str) -> None:
        """Renew the Redis lock every `renew_every` seconds until cancelled or lost.

        Renewals keep their schedule from when each one was due, so a slow Redis answer does not
        push the next renewal later (a renewal that took longer is followed by one at once)."""
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            due += self.renew_every
            await asyncio.sleep(max(0.0, due - loop.time()))
            due = max(due, loop.time())  # a late renewal is one renewal, not a burst
            try:
                renewed = await self._renew_script(keys=[key.lock], args=[token, self._ttl_ms])
            except RedisError as error:
                log.warning("Could not renew the turn lock of %s: %s", key, error)
                continue
            if not renewed:
                log.warning("Lost the turn lock of %s: it expired or another holder took it", key)
                return

    async def _release(self, key: ConversationKey, token: str) -> None:
        """Delete the Redis lock if it is still ours; finishes even if the caller is cancelled."""
        task = asyncio.create_task(self._delete_if_ours(key, token))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        await asyncio.shield(task)

    async def _delete_if_ours(self, key: ConversationKey, token: str) -> None:
        """Compare-and-delete the lock; a Redis failure only means it will expire by itself."""
        try:
            await self._release_script(keys=[key.lock], args=[token])
        except RedisError as error:
            log.warning("Could not release the turn lock of %s (it will expire): %s", key, error)
