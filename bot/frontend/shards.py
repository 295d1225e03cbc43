"""The bot on its shards beside the bot's other processes: a hot standby until this process holds
the lease of each of its shards, then the gateway; the leases kept while it runs, and Stop and
Regenerate answered for the other processes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

from bot.core.control import AnswerControl, ControlBus, RunningAnswers
from bot.core.process import ProcessIdentity
from bot.core.redis_client import RedisClient
from bot.core.shards import ShardLeases, shard_of
from bot.core.turns import Running
from bot.frontend.client import AssistantBot
from bot.ops.health import gateway_problem

log = logging.getLogger(__name__)

LOST_LEASE_STATUS = 1


class ShardRunner:
    """Connects the bot to the gateway only while this process holds its shards."""

    def __init__(
        self,
        bot: AssistantBot,
        redis: RedisClient,
        process: ProcessIdentity,
        running: RunningAnswers[Running],
        *,
        leases: ShardLeases | None = None,
    ) -> None:
        """`leases` defaults to the shards the settings give this process."""
        count, ids = bot.settings.shards
        self.bot = bot
        self.leases = leases or ShardLeases(redis, process, shard_count=count, shard_ids=ids)
        self.bus = ControlBus(redis, process)
        bot.answer_buttons.control = AnswerControl(
            running,
            self.bus,
            regenerate_here=bot.answer_buttons.queue_regenerate,
            shard_owner=self._owner_of,
        )
        self._stopping = asyncio.Event()
        self._closing: asyncio.Future[None] | None = None

    async def _owner_of(self, guild: str) -> str | None:
        """The process that holds a server's shard."""
        return await self.leases.owner(shard_of(int(guild), self.leases.shard_count))

    def gateway_problem(self) -> str | None:
        """For /healthz: a standby is healthy (it is ready to take over); else the gateway's."""
        return None if self.leases.standby else gateway_problem(self.bot)

    def stop(self) -> None:
        """Stop the bot, or stop waiting as a standby (SIGTERM, SIGINT)."""
        self._stopping.set()
        self._closing = asyncio.ensure_future(self.bot.close())

    async def run(self, token: str) -> int:
        """Log in, wait for the shards, serve them until stopped; the exit status."""
        await self.bot.login(token)
        if not await self._until_stopped(self.leases.acquire()):
            return 0
        serving = asyncio.create_task(self.bus.serve(), name="control inbox")
        keeping = asyncio.create_task(self.leases.keep(), name="shard leases")
        connected = asyncio.create_task(self.bot.connect(), name="gateway")
        try:
            await asyncio.wait({keeping, connected}, return_when=asyncio.FIRST_COMPLETED)
            if connected.done():
                connected.result()  # a fatal gateway error is raised to the caller
                return 0
            log.error(
                "Shard %d is now run by another process (this one lost Redis for too long); "
                "stopping so that only one process runs it.",
                keeping.result(),
            )
            await self.bot.close()
            with contextlib.suppress(Exception):
                await connected
            return LOST_LEASE_STATUS
        finally:
            for task in (serving, keeping, connected):
                task.cancel()
            await asyncio.gather(serving, keeping, connected, return_exceptions=True)
            await self.leases.release()

    async def _until_stopped(self, waiting: Coroutine[Any, Any, None]) -> bool:
        """Wait for `waiting` unless a stop comes first; True when it finished."""
        work = asyncio.create_task(waiting)
        stop = asyncio.create_task(self._stopping.wait())
        await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if not work.done():
            work.cancel()
            await asyncio.gather(work, return_exceptions=True)
            return False
        work.result()
        return True
