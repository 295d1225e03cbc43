"""The turn lock on a real redis-server: FIFO, exclusion across clients and processes, expiry."""

from __future__ import annotations

import asyncio
import logging
import random
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from bot.core.history import HistoryStore
from bot.core.keys import ConversationKey
from bot.core.redis_client import RedisClient
from bot.core.turnlock import TurnLock, TurnLockTimeout
from tests.support.redis_target import RedisTarget

pytestmark = pytest.mark.on_cluster

KEY = ConversationKey("123", "456")
ROOT = Path(__file__).resolve().parents[2]
FAST_POLL = (0.005, 0.02)
GUARD_SECONDS = 60  # only stops a broken test from hanging; never reached when things work


class LogSignal(logging.Handler):
    """Sets an asyncio.Event when a log message containing an expected text is emitted."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.expected: dict[str, asyncio.Event] = {}

    def expect(self, text: str) -> asyncio.Event:
        """An event set once a message containing `text` is logged."""
        return self.expected.setdefault(text, asyncio.Event())

    def emit(self, record: logging.LogRecord) -> None:
        """Set the events whose text the message contains."""
        message = record.getMessage()
        for text, event in self.expected.items():
            if text in message:
                event.set()


@pytest.fixture
def lock_log() -> Iterator[LogSignal]:
    """A LogSignal on the turn lock's logger, at DEBUG level."""
    logger = logging.getLogger("bot.core.turnlock")
    signal, level = LogSignal(), logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(signal)
    try:
        yield signal
    finally:
        logger.removeHandler(signal)
        logger.setLevel(level)


@pytest.fixture
async def other_client(redis_target: RedisTarget) -> AsyncIterator[RedisClient]:
    """A second, separate client: what another process of the bot would have."""
    client = redis_target.connect()
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def processes() -> AsyncIterator[list[asyncio.subprocess.Process]]:
    """Holder processes a test starts; any still running at the end are killed."""
    started: list[asyncio.subprocess.Process] = []
    try:
        yield started
    finally:
        for proc in started:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()


async def start_holder(
    procs: list[asyncio.subprocess.Process],
    target: RedisTarget,
    name: str,
    *,
    ttl: float = 30,
    renew: float = 10,
) -> asyncio.subprocess.Process:
    """Start tests.support.turn_holder for KEY as a separate process."""
    kind = "cluster" if target.cluster else "single"
    args = [target.url, kind, KEY.guild, KEY.channel, name, str(ttl), str(renew)]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.support.turn_holder",
        *args,
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    procs.append(proc)
    return proc


async def read_line(proc: asyncio.subprocess.Process) -> bytes:
    """The next line the process prints."""
    assert proc.stdout is not None
    async with asyncio.timeout(GUARD_SECONDS):
        return await proc.stdout.readline()


async def tell(proc: asyncio.subprocess.Process) -> None:
    """Give the process its go-ahead line."""
    assert proc.stdin is not None
    proc.stdin.write(b"go\n")
    await proc.stdin.drain()


def fast_lock(client: aioredis.Redis, **options: float) -> TurnLock:
    """A TurnLock that polls quickly, so handovers between clients stay fast."""
    return TurnLock(client, poll_interval=FAST_POLL, **options)


async def test_turns_enter_in_arrival_order(redis_client: aioredis.Redis) -> None:
    """Ten turns queued behind a holder enter in the order they arrived, not task order."""
    lock = fast_lock(redis_client)
    release_first, first_in = asyncio.Event(), asyncio.Event()
    entered: list[int] = []

    async def first() -> None:
        """Hold the lock until told to let go."""
        async with lock.hold(KEY):
            first_in.set()
            await release_first.wait()

    async def turn(number: int, arrived: asyncio.Event) -> None:
        """Arrive, then record entry."""
        arrived.set()
        async with lock.hold(KEY):
            entered.append(number)

    holder = asyncio.create_task(first())
    await first_in.wait()
    arrival = list(range(10))
    random.Random(7).shuffle(arrival)
    tasks = []
    for number in arrival:
        arrived = asyncio.Event()
        tasks.append(asyncio.create_task(turn(number, arrived)))
        await arrived.wait()
    assert lock.queued(KEY) == 11
    release_first.set()
    await asyncio.gather(holder, *tasks)
    assert entered == arrival
    assert lock.queued(KEY) == 0
    assert await redis_client.exists(KEY.lock) == 0


async def test_two_clients_exclude_each_other(
    redis_client: aioredis.Redis, other_client: RedisClient
) -> None:
    """Turns through two separate clients (two bot processes) never overlap."""
    locks = {"A": fast_lock(redis_client), "B": fast_lock(other_client)}
    trace: list[tuple[str, str]] = []

    async def turn(name: str) -> None:
        """Record entry, do some Redis round trips, record exit."""
        async with locks[name[0]].hold(KEY):
            trace.append(("in", name))
            for _ in range(3):
                await redis_client.ping()
            trace.append(("out", name))

    names = [f"{side}{n}" for n in range(6) for side in "AB"]
    await asyncio.gather(*(turn(name) for name in names))
    assert len(trace) == 2 * len(names)
    for enter, leave in zip(trace[::2], trace[1::2], strict=True):
        assert (enter[0], leave[0], enter[1]) == ("in", "out", leave[1])


async def test_two_processes_leave_both_turns_whole(
    redis_client: aioredis.Redis,
    redis_target: RedisTarget,
    processes: list[asyncio.subprocess.Process],
) -> None:
    """Two processes in one channel at once: one waits, and each answer follows its question."""
    one = await start_holder(processes, redis_target, "one")
    two = await start_holder(processes, redis_target, "two")
    reads = {asyncio.create_task(read_line(proc)): proc for proc in (one, two)}
    done, _ = await asyncio.wait(reads, return_when=asyncio.FIRST_COMPLETED)
    first_read = done.pop()
    first = reads.pop(first_read)
    (second_read, second) = reads.popitem()
    assert first_read.result() == b"held 0\n"
    await tell(first)
    assert await read_line(first) == b"released\n"
    assert await second_read == b"held 2\n"
    await tell(second)
    assert await read_line(second) == b"released\n"
    assert [await first.wait(), await second.wait()] == [0, 0]
    store = HistoryStore(redis_client, max_items=100, max_chars=10_000, ttl_seconds=60)
    f, s = ("one", "two") if first is one else ("two", "one")
    assert [item.text for item in await store.load(KEY)] == [
        f"question of {f}",
        f"answer to {f} after 0",
        f"question of {s}",
        f"answer to {s} after 2",
    ]
    assert await redis_client.exists(KEY.lock) == 0


async def test_lock_expires_when_its_holder_dies(
    redis_client: aioredis.Redis,
    redis_target: RedisTarget,
    processes: list[asyncio.subprocess.Process],
) -> None:
    """A process killed while holding the lock stops renewing it, so the next turn gets in."""
    holder = await start_holder(processes, redis_target, "doomed", ttl=1, renew=0.3)
    assert await read_line(holder) == b"held 0\n"
    assert await redis_client.get(KEY.lock) is not None
    holder.kill()
    await holder.wait()
    entered = False
    async with fast_lock(redis_client).hold(KEY, wait_timeout=GUARD_SECONDS):
        entered = True
    assert entered


async def test_a_dead_holder_keeps_others_out_for_seconds_only(
    redis_client: aioredis.Redis,
) -> None:
    """With the default sizing the lock a holder stops renewing expires within 6 s (it was 30 s:
    a bot restarted after a crash waited that long for its dead predecessor's lock)."""
    async with TurnLock(redis_client).hold(KEY):
        expires_in = await redis_client.pttl(KEY.lock)
    assert 0 < expires_in <= 6000


async def test_renewal_keeps_the_lock_past_its_ttl(
    redis_client: aioredis.Redis, other_client: RedisClient
) -> None:
    """While held, the lock outlives its TTL: another client waiting 2.5 TTLs gives up."""
    holder = fast_lock(redis_client, ttl_seconds=1, renew_every=0.1)
    waiter = fast_lock(other_client, ttl_seconds=1, renew_every=0.1)
    async with holder.hold(KEY):
        token = await redis_client.get(KEY.lock)
        with pytest.raises(TurnLockTimeout, match="g:123:c:456"):
            async with waiter.hold(KEY, wait_timeout=2.5):
                pytest.fail("the waiter got a lock that was held")
        assert await redis_client.get(KEY.lock) == token
    assert waiter.queued(KEY) == 0
    assert await redis_client.exists(KEY.lock) == 0


async def test_lost_lock_is_logged_and_never_deleted(
    redis_client: aioredis.Redis, lock_log: LogSignal
) -> None:
    """If another holder took the lock, renewal warns and release leaves their lock alone."""
    lost = lock_log.expect("Lost the turn lock of g:123:c:456")
    async with fast_lock(redis_client, ttl_seconds=5, renew_every=0.05).hold(KEY):
        await redis_client.set(KEY.lock, "someone-else")
        async with asyncio.timeout(GUARD_SECONDS):
            await lost.wait()
    assert await redis_client.get(KEY.lock) == b"someone-else"


async def test_wait_timeout_in_process(redis_client: aioredis.Redis) -> None:
    """A turn queued behind a long one gives up with TurnLockTimeout and leaves the queue."""
    lock = fast_lock(redis_client)
    async with lock.hold(KEY):
        with pytest.raises(TurnLockTimeout):
            async with lock.hold(KEY, wait_timeout=0.05):
                pytest.fail("entered while the lock was held")
        assert lock.queued(KEY) == 1
        assert await redis_client.exists(KEY.lock) == 1
    assert lock.queued(KEY) == 0


async def test_cancel_while_waiting_in_process(redis_client: aioredis.Redis) -> None:
    """A cancelled waiter leaves the queue and the next waiter still gets its turn."""
    lock = fast_lock(redis_client)
    release, holding = asyncio.Event(), asyncio.Event()
    entered: list[str] = []

    async def hold_until_released() -> None:
        """Hold until told to let go."""
        async with lock.hold(KEY):
            holding.set()
            await release.wait()

    async def turn(name: str, arrived: asyncio.Event) -> None:
        """Arrive, then record entry."""
        arrived.set()
        async with lock.hold(KEY):
            entered.append(name)

    holder = asyncio.create_task(hold_until_released())
    await holding.wait()
    arrivals = [asyncio.Event(), asyncio.Event()]
    cancelled = asyncio.create_task(turn("cancelled", arrivals[0]))
    await arrivals[0].wait()
    kept = asyncio.create_task(turn("kept", arrivals[1]))
    await arrivals[1].wait()
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert lock.queued(KEY) == 2
    release.set()
    await asyncio.gather(holder, kept)
    assert entered == ["kept"]
    assert lock.queued(KEY) == 0
    assert await redis_client.exists(KEY.lock) == 0


async def test_cancel_while_waiting_for_another_process(
    redis_client: aioredis.Redis, other_client: RedisClient, lock_log: LogSignal
) -> None:
    """Cancelling a turn that polls for another client's lock leaves that lock untouched."""
    ours, theirs = fast_lock(redis_client), fast_lock(other_client)
    polling = lock_log.expect("held by another process")
    async with theirs.hold(KEY):
        token = await other_client.get(KEY.lock)
        waiter = asyncio.create_task(ours.hold(KEY).__aenter__())
        async with asyncio.timeout(GUARD_SECONDS):
            await polling.wait()
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert await other_client.get(KEY.lock) == token
        assert ours.queued(KEY) == 0
    async with ours.hold(KEY, wait_timeout=GUARD_SECONDS):
        assert await redis_client.get(KEY.lock) != token


async def test_cancel_while_holding_releases(redis_client: aioredis.Redis) -> None:
    """A turn cancelled while it holds the lock releases it at once, locally and in Redis."""
    lock = fast_lock(redis_client)
    holding = asyncio.Event()

    async def hold_forever() -> None:
        """Hold until cancelled."""
        async with lock.hold(KEY):
            holding.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(hold_forever())
    await holding.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await redis_client.exists(KEY.lock) == 0
    assert lock.queued(KEY) == 0
    async with lock.hold(KEY, wait_timeout=1):
        assert await redis_client.exists(KEY.lock) == 1


async def test_error_in_turn_releases(redis_client: aioredis.Redis) -> None:
    """An exception inside the turn propagates and the lock is free afterwards."""
    lock = fast_lock(redis_client)
    with pytest.raises(RuntimeError, match="boom"):
        async with lock.hold(KEY):
            raise RuntimeError("boom")
    assert await redis_client.exists(KEY.lock) == 0
    assert lock.queued(KEY) == 0


async def test_different_conversations_do_not_wait(redis_client: aioredis.Redis) -> None:
    """Holding one conversation's lock does not block another conversation."""
    lock = fast_lock(redis_client)
    other = ConversationKey("123", "789")
    async with lock.hold(KEY), lock.hold(other, wait_timeout=5):
        assert await redis_client.exists(KEY.lock, other.lock) == 2


def test_rejects_renewal_slower_than_ttl(redis_client: aioredis.Redis) -> None:
    """A renewal interval at or above the TTL would let the lock lapse, so it is refused."""
    with pytest.raises(ValueError, match="renew_every"):
        TurnLock(redis_client, ttl_seconds=1, renew_every=1)
