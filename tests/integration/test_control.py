"""Stop and Regenerate across processes on a real redis-server: two processes' registries, inboxes
and shard leases; the answer comes back to the process that received the press."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
import redis.asyncio as aioredis

from bot.core.control import AnswerControl, ControlBus, RunningAnswers
from bot.core.keys import ConversationKey
from bot.core.process import ProcessIdentity
from bot.core.shards import ShardLeases, shard_of
from bot.core.turns import Running
from tests.support.redis_server import RedisServer

GUILD = 5 << 22  # on shard 1 of 2
KEY = ConversationKey(str(GUILD), "42")


@dataclass
class Process:
    """What one bot process has: its registry, inbox, leases, and the Regenerates it queued."""

    running: RunningAnswers[Running]
    control: AnswerControl[Running]
    leases: ShardLeases
    serving: asyncio.Task[None]
    queued: list[tuple[ConversationKey, int, list[str]]] = field(default_factory=list)
    busy: bool = False


async def start_process(client: aioredis.Redis, name: str, shard: int) -> Process:
    """A process holding `shard` of 2 and reading its inbox."""
    identity = ProcessIdentity(name)
    running = RunningAnswers[Running](client, identity, ttl_seconds=5, renew_every=1)
    bus = ControlBus(client, identity, reply_timeout=0.5, poll_seconds=0.2)
    leases = ShardLeases(client, identity, shard_count=2, shard_ids=(shard,))
    await leases.acquire()
    process: Process

    def regenerate_here(key: ConversationKey, asker: int, ids: list[str]) -> bool:
        process.queued.append((key, asker, ids))
        return not process.busy

    async def owner(guild: str) -> str | None:
        return await leases.owner(shard_of(int(guild), 2))

    control = AnswerControl(running, bus, regenerate_here=regenerate_here, shard_owner=owner)
    process = Process(running, control, leases, asyncio.create_task(bus.serve()))
    return process


@pytest.fixture
async def two(
    redis_client: aioredis.Redis, redis_server: RedisServer
) -> AsyncIterator[tuple[Process, Process]]:
    """Process "zero" (shard 0) and process "one" (shard 1, where KEY's server is)."""
    other = aioredis.Redis.from_url(redis_server.url)
    zero = await start_process(redis_client, "zero", 0)
    one = await start_process(other, "one", 1)
    try:
        yield zero, one
    finally:
        for process in (zero, one):
            process.serving.cancel()
            await asyncio.gather(process.serving, return_exceptions=True)
        await other.aclose()


async def test_stop_pressed_in_the_other_process_stops_the_answer(
    two: tuple[Process, Process], redis_client: aioredis.Redis
) -> None:
    """Process one streams; process zero receives Stop: it finds the asker, the answer stops,
    and the receiver hears "stopped", not "already finished"."""
    zero, one = two
    answer = Running(KEY, asker_id=7)
    one.running[KEY] = answer
    await one.running.settled()  # the record is written in the background
    assert await redis_client.pttl(KEY.running) > 0
    record = await zero.control.find(KEY)
    assert record is not None
    assert (record.process, record.asker_id) == ("one", 7)
    assert await zero.control.stop(KEY) == "stopped"
    assert answer.stop.is_set()


async def test_stop_when_nobody_streams_says_finished(two: tuple[Process, Process]) -> None:
    """No record anywhere: "finished" (the only case for "That answer has already finished")."""
    zero, _one = two
    assert await zero.control.find(KEY) is None
    assert await zero.control.stop(KEY) == "finished"


async def test_record_goes_when_the_answer_ends(
    two: tuple[Process, Process], redis_client: aioredis.Redis
) -> None:
    """Once the answer stops streaming its record is deleted, so Stop says finished."""
    zero, one = two
    answer = Running(KEY, asker_id=7)
    one.running[KEY] = answer
    await one.running.settled()
    assert await redis_client.exists(KEY.running)
    assert one.running.pop(KEY) is answer
    await one.running.settled()
    assert not await redis_client.exists(KEY.running)
    assert await zero.control.stop(KEY) == "finished"


async def test_stop_for_a_dead_process_is_unreachable(
    two: tuple[Process, Process], redis_client: aioredis.Redis
) -> None:
    """A record left by a process that no longer reads its inbox: no answer within the timeout,
    so the receiver says it could not reach it (not that the answer finished)."""
    zero, _one = two
    await redis_client.set(KEY.running, '{"process": "gone", "asker": 7}', px=5000)
    assert await zero.control.stop(KEY) == "unreachable"


async def test_regenerate_goes_to_the_shard_owner(two: tuple[Process, Process]) -> None:
    """A Regenerate press in process zero for a server of shard 1 is queued in process one;
    busy there is told back to the receiver."""
    zero, one = two
    assert await zero.control.regenerate(KEY, 7, ["1", "2"]) == "queued"
    assert one.queued == [(KEY, 7, ["1", "2"])]
    assert zero.queued == []
    one.busy = True
    assert await zero.control.regenerate(KEY, 7, ["1", "2"]) == "busy"
    assert await one.control.regenerate(KEY, 7, ["3"]) == "busy"  # the owner queues it itself
    assert one.queued[-1] == (KEY, 7, ["3"])
