"""`python -m bench`: SSE decode throughput and Redis history latency, printed as a table.

The SSE part decodes a large realistic transcript cut into random chunks (as a network would
deliver it), once with the bare decoder and once through the Responses event parser too.
The history part starts its own redis-server on a free port (never the REDIS_URL of a .env)
and times `HistoryStore.append` of one exchange and `HistoryStore.load` of a full history.
"""

from __future__ import annotations

import asyncio
import functools
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as aioredis

from bench import bench_renderer
from bot.core.events import HistoryItem
from bot.core.history import HistoryStore
from bot.core.keys import ConversationKey
from bot.core.response_stream import ResponseStreamParser
from bot.core.sse import SSEDecoder
from tests.support.fake_responses import split_bytes, sse_stream
from tests.support.redis_server import RedisServer

SEED = 20240601
SSE_DELTAS = 40_000
SSE_RUNS = 5
MAX_CHUNK = 4096
HISTORY_APPENDS = 500
HISTORY_LOADS = 500
HISTORY_ITEMS = 40


@dataclass(frozen=True)
class Row:
    """One line of the result table."""

    name: str
    value: str
    detail: str = ""


def transcript_chunks(rng: random.Random) -> tuple[bytes, list[bytes]]:
    """A large answer transcript (mixed scripts and emoji) and its random network chunks."""
    words = ["the ", "answer ", "Grüße ", "你好 ", "👋🏽 ", "x\u2028y ", '"quoted" ', "\n"]
    deltas = ["".join(rng.choices(words, k=rng.randint(1, 6))) for _ in range(SSE_DELTAS)]
    data = sse_stream(deltas)
    cuts: list[int] = []
    position = 0
    while position < len(data):
        position += rng.randint(1, MAX_CHUNK)
        cuts.append(position)
    return data, split_bytes(data, cuts)


def decode_only(chunks: list[bytes]) -> int:
    """Decode every chunk with the bare SSE decoder; the number of events."""
    decoder = SSEDecoder()
    count = sum(len(decoder.feed(chunk)) for chunk in chunks)
    return count + len(decoder.close())


def decode_and_parse(chunks: list[bytes]) -> int:
    """Decode and map every event to typed stream events; the number of typed events."""
    decoder, parser = SSEDecoder(), ResponseStreamParser()
    count = 0
    for chunk in chunks:
        for sse in decoder.feed(chunk):
            count += len(parser.on_event(sse))
    return count


def throughput(size: int, work: Callable[[], int]) -> tuple[float, float]:
    """Best and median MB/s of SSE_RUNS runs of `work` over `size` bytes."""
    rates = []
    for _ in range(SSE_RUNS):
        start = time.perf_counter()
        work()
        rates.append(size / (time.perf_counter() - start) / 1e6)
    return max(rates), statistics.median(rates)


def sse_rows() -> list[Row]:
    """The SSE throughput rows."""
    data, chunks = transcript_chunks(random.Random(SEED))
    size = len(data)
    rows = [Row("transcript", f"{size / 1e6:.1f} MB", f"{len(chunks)} chunks of 1-{MAX_CHUNK} B")]
    for name, work in (("SSE decode", decode_only), ("SSE decode + parse", decode_and_parse)):
        best, median = throughput(size, functools.partial(work, chunks))
        rows.append(Row(name, f"{median:.1f} MB/s", f"best {best:.1f} MB/s, {SSE_RUNS} runs"))
    return rows


def latency_row(name: str, seconds: list[float]) -> Row:
    """A row with the median latency and the spread."""
    ms = sorted(s * 1000 for s in seconds)
    p95 = ms[int(len(ms) * 0.95) - 1]
    return Row(name, f"{statistics.median(ms):.3f} ms", f"p95 {p95:.3f} ms, max {ms[-1]:.3f} ms")


async def timed(count: int, action: Callable[[int], Awaitable[object]]) -> list[float]:
    """Run the awaitable `action(i)` count times; the duration of each."""
    durations = []
    for i in range(count):
        start = time.perf_counter()
        await action(i)
        durations.append(time.perf_counter() - start)
    return durations


async def history_rows(url: str) -> list[Row]:
    """Append and load latencies of HistoryStore on the bench's own redis-server."""
    client = aioredis.Redis.from_url(url)
    try:
        store = HistoryStore(client, max_items=HISTORY_ITEMS, max_chars=40_000, ttl_seconds=600)
        key = ConversationKey("bench", "history")
        answer = "An answer of moderate length. " * 20

        def exchange(i: int) -> Awaitable[None]:
            items = [
                HistoryItem(role="user", text=f"Question {i}?", speaker="Bench"),
                HistoryItem(role="assistant", text=answer, item_id=f"msg_{i}"),
            ]
            return store.append(key, items)

        appends = await timed(HISTORY_APPENDS, exchange)
        loaded = len(await store.load(key))
        loads = await timed(HISTORY_LOADS, lambda _i: store.load(key))
    finally:
        await client.aclose()
    return [
        latency_row("history append (2 items)", appends),
        latency_row(f"history load ({loaded} items)", loads),
    ]


def print_table(rows: list[Row]) -> None:
    """The rows as an aligned table."""
    width = max(len(row.name) for row in rows)
    value_width = max(len(row.value) for row in rows)
    for row in rows:
        print(f"{row.name:<{width}}  {row.value:>{value_width}}  {row.detail}")


def main() -> None:
    """Run every benchmark and print the table."""
    rows = sse_rows()
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as workdir:
        server = RedisServer(Path(workdir))
        server.start()
        try:
            rows += asyncio.run(history_rows(server.url))
        finally:
            server.stop()
    print_table(rows)
    print()
    bench_renderer.main()


if __name__ == "__main__":
    main()
