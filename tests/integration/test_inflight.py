"""In-flight records against a real redis-server: their life with an answer, orphans of dead
processes only, one claim per orphan, and a TurnRunner that records its answers."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import redis.asyncio as aioredis

from bot.core.events import HistoryItem
from bot.core.inflight import InFlightAnswers, InFlightRecord
from bot.core.keys import INFLIGHT_INDEX, ConversationKey, process_alive
from tests.integration.test_turns import (
    KEY,
    Rig,
    WatchedSink,
    first_then_held,
    question,
    run_with_rig,
)
from tests.support.recording_sink import RecordingSink
from tests.support.redis_server import RedisServer

OTHER_KEY = ConversationKey("800", "801")


async def stored(redis: aioredis.Redis, record: InFlightRecord) -> InFlightRecord | None:
    """The record as Redis holds it now, if at all."""
    raw = await redis.get(record.redis_key)
    return None if raw is None else InFlightRecord.from_json(raw)


async def test_record_lives_while_the_answer_streams(redis_client: aioredis.Redis) -> None:
    """begin writes the record and its index entry; each new message is added once (edits of
    it write nothing); end deletes both."""
    answers = InFlightAnswers(redis_client, process_id="alive")
    answer = await answers.begin(OTHER_KEY, asker_id=7, sink="channel", question_ref="55")
    assert answer is not None
    record = answer.record
    assert await stored(redis_client, record) == record
    assert await redis_client.sismember(INFLIGHT_INDEX, record.index_member)
    sink = answer.tracking(RecordingSink(channel="801", latency=0))
    first = await sink.send("one ▌", first=True)
    await redis_client.delete(record.redis_key)  # an edit of a known message must not rewrite
    await sink.edit(first, "one two ▌")
    assert await stored(redis_client, answer.record) is None
    second = await sink.send("three ▌", first=False)
    saved = await stored(redis_client, answer.record)
    assert saved is not None
    assert saved.messages == (first.id, second.id)
    assert (saved.asker_id, saved.sink, saved.question_ref, saved.owner) == (
        7,
        "channel",
        "55",
        "alive",
    )
    await answer.end()
    assert await redis_client.exists(record.redis_key) == 0
    assert await redis_client.scard(INFLIGHT_INDEX) == 0


async def test_only_records_of_dead_processes_are_orphans(redis_client: aioredis.Redis) -> None:
    """A record whose owner's heartbeat is gone is an orphan; a live owner's and this process's
    own are not; each orphan can be claimed once."""
    dead = InFlightAnswers(redis_client, process_id="dead")
    live = InFlightAnswers(redis_client, process_id="live")
    me = InFlightAnswers(redis_client, process_id="me")
    for answers in (dead, live, me):
        await answers.beat()
        await answers.begin(OTHER_KEY, asker_id=1, sink="channel")
    await redis_client.delete(process_alive("dead"))  # its TTL ran out: the process is gone
    [orphan] = await me.orphans()
    assert orphan.owner == "dead"
    assert await me.claim(orphan) is True
    assert await live.claim(orphan) is False
    assert await me.orphans() == []
    assert await redis_client.scard(INFLIGHT_INDEX) == 2


async def test_heartbeat_expires_by_itself(redis_client: aioredis.Redis) -> None:
    """The heartbeat has a TTL, so a killed process stops counting as alive on its own."""
    answers = InFlightAnswers(redis_client, process_id="short", heartbeat_ttl=10)
    await answers.beat()
    assert 0 < await redis_client.pttl(process_alive("short")) <= 10_000
    await answers.stop_beating()
    assert await redis_client.exists(process_alive("short")) == 0


def answer_ids(members: set[bytes]) -> list[str]:
    """The answer ids of index entries."""
    return [str(json.loads(member)[2]) for member in members]


def test_runner_records_its_answer_until_it_ends(redis_server: RedisServer) -> None:
    """While an answer streams its record names its message and question; after it ends (here
    by Stop) the record is gone. A private answer (record=False) leaves no record."""

    async def scenario(rig: Rig) -> dict[str, Any]:
        assert rig.inflight is not None
        never = asyncio.Event()
        rig.server.push(first_then_held("Partial", never, "msg_a"))
        sink = WatchedSink(channel="701")
        items = [HistoryItem(role="user", text="hi", speaker="Ann", ref="q1")]
        task = asyncio.create_task(rig.runner.run(KEY, items, asker_id=3, sink=sink))
        await sink.wait_for(lambda: any("Partial" in c for c in sink.messages()))
        during = await rig.inflight.orphans()  # its owner is alive: not an orphan
        [answer_id] = answer_ids(await rig.redis.smembers(INFLIGHT_INDEX))
        raw = await rig.redis.get(KEY.inflight(answer_id))
        stop(rig)
        await task
        after = await rig.redis.scard(INFLIGHT_INDEX)
        rig.server.push(first_then_held("Aside", never, "msg_b"))
        private = WatchedSink(channel="702")
        task = asyncio.create_task(
            rig.runner.run(KEY, question("psst"), asker_id=3, sink=private, record=False)
        )
        await private.wait_for(lambda: any("Aside" in c for c in private.messages()))
        while_private = await rig.redis.scard(INFLIGHT_INDEX)
        stop(rig)
        await task
        return {
            "during": during,
            "record": InFlightRecord.from_json(raw),
            "after": after,
            "private": while_private,
        }

    result = run_with_rig(redis_server, scenario, inflight=True)
    assert result["during"] == []
    record = result["record"]
    assert (record.messages, record.question_ref, record.asker_id) == (("701-0",), "q1", 3)
    assert record.sink == "channel"
    assert result["after"] == 0
    assert result["private"] == 0


def stop(rig: Rig) -> None:
    """Press Stop on the answer streaming in KEY."""
    running = rig.runner.running(KEY)
    assert running is not None
    running.stop.set()
