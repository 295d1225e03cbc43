"""Memory: the bot's per-conversation state in the process, and a stored conversation in Redis.

Part one runs CONVERSATIONS conversations, one turn each, through a `TurnLock`, a
`HistoryStore` and an `EditPacer` (on a fake clock, so the pacer sees hours pass), and compares
the traced Python heap after a warm-up with the heap at the end: what each extra conversation
leaves behind in the process. Part two fills conversations to the default history limits
(40 items / 40,000 characters) on a private redis-server and reads `INFO memory`.
"""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as aioredis

from bench.table import Row
from bot.core.events import HistoryItem
from bot.core.history import HistoryStore
from bot.core.keys import ConversationKey
from bot.core.pacing import EditPacer
from bot.core.turnlock import TurnLock

CONVERSATIONS = 10_000
WARM_UP = 1_000
CONCURRENCY = 50
MAX_ITEMS = 40
MAX_CHARS = 40_000
FILLED = 100
QUESTION_CHARS = 300
ANSWER_CHARS = 1_700


class FakeClock:
    """A clock the pacer reads; its sleeps move time forward instead of waiting."""

    def __init__(self) -> None:
        self.now = 0.0

    def time(self) -> float:
        """The fake time."""
        return self.now

    async def sleep(self, seconds: float) -> None:
        """Let `seconds` pass at once."""
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)


def rss_bytes() -> int:
    """The process's resident set size, from /proc (0 where there is none)."""
    try:
        status = Path("/proc/self/status").read_text(encoding="ascii")
    except OSError:
        return 0
    line = next((line for line in status.splitlines() if line.startswith("VmRSS:")), "")
    return int(line.split()[1]) * 1024 if line else 0


@dataclass
class TurnParts:
    """The per-key machinery one turn goes through."""

    lock: TurnLock
    store: HistoryStore
    pacer: EditPacer
    clock: FakeClock


async def one_turn(parts: TurnParts, number: int) -> None:
    """A turn: hold the lock, load, first send, an edit, the final edit, store the exchange."""
    key = ConversationKey("bench", f"c{number}")
    bucket = f"channel:{number}"
    async with parts.lock.hold(key):
        await parts.store.load(key)
        await parts.pacer.acquire(bucket, urgent=True)
        await parts.pacer.acquire(bucket)
        await parts.pacer.acquire(bucket, urgent=True)
        items = [
            HistoryItem(role="user", text=f"Question {number}?", speaker="Bench"),
            HistoryItem(role="assistant", text="An answer. " * 30, item_id=f"msg_{number}"),
        ]
        await parts.store.append(key, items)


async def run_turns(parts: TurnParts, first: int, count: int) -> None:
    """Run `count` conversations' turns, CONCURRENCY at a time, a second apart per batch."""
    for start in range(first, first + count, CONCURRENCY):
        batch = range(start, min(start + CONCURRENCY, first + count))
        await asyncio.gather(*(one_turn(parts, number) for number in batch))
        parts.clock.now += 1.0


def traced_heap() -> int:
    """Bytes the traced Python heap holds after a full collection."""
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


async def per_key_state_rows(url: str) -> list[Row]:
    """Heap growth per conversation after one turn each, and the size of the per-key maps."""
    client = aioredis.Redis.from_url(url, max_connections=CONCURRENCY * 2)
    try:
        clock = FakeClock()
        parts = TurnParts(
            TurnLock(client),
            HistoryStore(client, max_items=MAX_ITEMS, max_chars=MAX_CHARS, ttl_seconds=600),
            EditPacer(clock=clock.time, sleep=clock.sleep),
            clock,
        )
        await run_turns(parts, 0, WARM_UP)
        tracemalloc.start()
        heaps, rss = [traced_heap()], [rss_bytes()]
        half = (CONVERSATIONS - WARM_UP) // 2
        for first, count in ((WARM_UP, half), (WARM_UP + half, CONVERSATIONS - WARM_UP - half)):
            await run_turns(parts, first, count)
            heaps.append(traced_heap())
            rss.append(rss_bytes())
        tracemalloc.stop()
        maps = (
            f"TurnLock queues {len(parts.lock._queues)}, "
            f"pacer buckets {len(parts.pacer.budget._buckets)}, waiting {parts.pacer.waiting}"
        )
        await client.flushdb()
    finally:
        await client.aclose()
    return heap_rows(heaps, rss, half, maps)


def heap_rows(heaps: list[int], rss: list[int], half: int, maps: str) -> list[Row]:
    """Rows for the heap at the warm-up's end, halfway and at the end."""
    first, second = heaps[1] - heaps[0], heaps[2] - heaps[1]
    return [
        Row(
            "heap per conversation, 1st half",
            f"{first / half:.1f} B",
            f"{first / 1024:+.0f} KiB over turns {WARM_UP:,}-{WARM_UP + half:,}",
            "traced Python heap growth per one-turn conversation (0 = nothing kept per key)",
        ),
        Row(
            "heap per conversation, 2nd half",
            f"{second / half:.1f} B",
            f"{second / 1024:+.0f} KiB up to turn {CONVERSATIONS:,}; {maps}",
            "the same for the last half: near 0 means per-key state does not grow",
        ),
        Row(
            "process RSS",
            f"{rss[2] / 2**20:.1f} MiB",
            f"{(rss[1] - rss[0]) / 2**20:+.1f} then {(rss[2] - rss[1]) / 2**20:+.1f} MiB",
            "resident memory of the benchmark process after all turns (change per half)",
        ),
    ]


def filler(alphabet: str, size: int, number: int) -> str:
    """Text of `size` characters made from `alphabet`, different per `number`."""
    return (f"{number} " + alphabet * (size // len(alphabet) + 1))[:size]


async def fill_conversation(store: HistoryStore, number: int, alphabet: str) -> None:
    """Append exchanges until the conversation holds the most its limits let it keep."""
    key = ConversationKey("bench", f"full{number}")
    # One more would pass the limits and trim the history to half of them.
    exchanges = MAX_ITEMS // 2
    for turn in range(exchanges):
        items = [
            HistoryItem(role="user", text=filler(alphabet, QUESTION_CHARS, turn), speaker="Ann"),
            HistoryItem(
                role="assistant",
                text=filler(alphabet, ANSWER_CHARS, turn),
                item_id=f"msg_{number}_{turn}",
            ),
        ]
        await store.append(key, items)


async def used_memory(client: aioredis.Redis) -> int:
    """Redis's `used_memory`, in bytes."""
    info = await client.info("memory")
    return int(info["used_memory"])


async def stored_conversation_row(client: aioredis.Redis, script: str, alphabet: str) -> Row:
    """Redis memory per conversation filled to the default limits with text of one script."""
    store = HistoryStore(client, max_items=MAX_ITEMS, max_chars=MAX_CHARS, ttl_seconds=604_800)
    await fill_conversation(store, -1, alphabet)  # loads the scripts before the baseline
    await client.flushdb()
    before = await used_memory(client)
    for start in range(0, FILLED, CONCURRENCY):
        numbers = range(start, min(start + CONCURRENCY, FILLED))
        await asyncio.gather(*(fill_conversation(store, n, alphabet) for n in numbers))
    after = await used_memory(client)
    sample = ConversationKey("bench", "full0")
    items = await store.load(sample)
    chars = sum(len(item.text) for item in items)
    await client.flushdb()
    return Row(
        f"Redis per conversation ({script})",
        f"{(after - before) / FILLED / 1024:.1f} KiB",
        f"{len(items)} items, {chars:,} characters each; {FILLED} conversations",
        "INFO used_memory growth per conversation kept at the default 40 items / 40k chars",
    )


async def redis_rows(url: str) -> list[Row]:
    """Redis memory per full conversation, for one-byte and three-byte UTF-8 text."""
    client = aioredis.Redis.from_url(url, max_connections=CONCURRENCY * 2)
    try:
        return [
            await stored_conversation_row(client, "ASCII", "the answer "),
            await stored_conversation_row(client, "CJK", "这是回答的文字"),
        ]
    finally:
        await client.aclose()


async def all_rows(url: str) -> list[Row]:
    """Every memory row, in order."""
    return [*await per_key_state_rows(url), *await redis_rows(url)]
