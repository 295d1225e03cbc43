"""`python -m bench` (`make bench`): the bot's speed and memory, printed as tables.

The machine's core count comes first, since every number depends on it. Then: SSE decode
throughput (a large realistic transcript cut into random network chunks, bare and through the
Responses event parser), `HistoryStore` latencies, server-memory recall on 1,000 facts
(bench_recall), the renderer's hot path, memory (per-key
state in the process after 10,000 conversations; Redis memory per full conversation), prompt
caching (bench_cache: how often a 100-turn conversation's request extends the previous one, and
the input characters per turn) and live replies under load in real time (bench_live, ~50 s),
then 200 answers at once in one process (CPU, peak RSS, staleness, requests, would-be 429s),
then two processes sharing one global budget through Redis against the same two with local
pacing only (bench_shared, ~25 s: merged requests per second, shares, would-be 429s).
Redis work uses the bench's own redis-server on a free port, never the REDIS_URL of a .env.
"""

from __future__ import annotations

import asyncio
import functools
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import redis.asyncio as aioredis

from bench import (
    bench_cache,
    bench_live,
    bench_memory,
    bench_recall,
    bench_renderer,
    bench_shared,
)
from bench.table import Row, latency_row, print_table, timed
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
    rows = [
        Row(
            "transcript",
            f"{size / 1e6:.1f} MB",
            f"{len(chunks)} chunks of 1-{MAX_CHUNK} B",
            "the SSE input: 40,000 deltas of mixed scripts and emoji",
        )
    ]
    works = (
        ("SSE decode", decode_only, "bytes to SSE events (median of runs)"),
        ("SSE decode + parse", decode_and_parse, "bytes to typed answer events (median of runs)"),
    )
    for name, work, explains in works:
        best, median = throughput(size, functools.partial(work, chunks))
        detail = f"best {best:.1f} MB/s, {SSE_RUNS} runs"
        rows.append(Row(name, f"{median:.1f} MB/s", detail, explains))
    return rows


async def history_rows(url: str) -> list[Row]:
    """Append and load latencies of HistoryStore on the bench's own redis-server."""
    client = aioredis.Redis.from_url(url)
    try:
        store = HistoryStore(client, max_items=HISTORY_ITEMS, max_chars=40_000, ttl_seconds=600)
        key = ConversationKey("bench", "history")
        answer = "An answer of moderate length. " * 20

        def exchange(i: int) -> Awaitable[int]:
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
        latency_row(
            "history append (2 items)", appends, "one exchange stored: Lua append + trim + TTL"
        ),
        latency_row(f"history load ({loaded} items)", loads, "a full history read and decoded"),
    ]


def machine_line() -> str:
    """The machine the numbers come from: cores, Python, redis-server."""
    cores = os.cpu_count() or 0
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    return f"Machine: {cores} cores ({usable} usable), Python {platform.python_version()}"


async def redis_rows(url: str) -> tuple[list[Row], list[Row], list[Row]]:
    """History and server-memory recall latency rows, memory rows and prompt-caching rows, on
    the bench's redis-server."""
    history = await history_rows(url) + await bench_recall.rows(url)
    return history, await bench_memory.all_rows(url), await bench_cache.rows(url)


def main() -> None:
    """Run every benchmark and print the tables."""
    print(machine_line(), end="\n\n", flush=True)
    sse = sse_rows()
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as workdir:
        server = RedisServer(Path(workdir))
        server.start()
        try:
            history, memory, cache = asyncio.run(redis_rows(server.url))
        finally:
            server.stop()
    print_table("Speed: SSE decoding, Redis history and server memory", [*sse, *history])
    print_table("Renderer hot path", bench_renderer.rows())
    print_table("Memory", memory)
    print_table("Prompt caching: a 100-turn conversation", cache)
    sys.stdout.flush()
    bench_live.main()
    print()
    bench_live.load_main()
    print(flush=True)
    bench_shared.main()


if __name__ == "__main__":
    main()
