"""Two bot processes sharing Discord's global budget through Redis, in real time.

Two real OS processes (multiprocessing, spawn) each stream SHARED_ANSWERS answers at once, one
per channel, through their own `EditPacer` and real `ReplyRenderer`s, with the live bench's
answers and Discord-like sink (bench_live). Once their pacers share one `SharedRequestBudget`
(DISCORD_REQUESTS_PER_SECOND = 40, GCRA in Redis, the bench's own redis-server), once with local
pacing only (each process its own 40 per second, as before the budget was shared). Each sink
notes when every request starts on the asyncio loop's clock, `time.monotonic`, which on Linux
is one clock for every process of the machine; the two timelines are merged and measured as
Discord sees them: requests per second in any 1 s window, per-process shares, time to first
text, and how many requests Discord's 50 per second per bot would answer with 429.
Run alone with `python -m bench.bench_live shared`.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from bench.bench_live import (
    BUCKET_WINDOW,
    DISCORD_BUCKET_LIMIT,
    DISCORD_GLOBAL_PER_SECOND,
    SEED,
    STREAM_SECONDS,
    TOKENS_PER_SECOND,
    AnswerTrace,
    MetricRow,
    TimedSink,
    median_worst,
    most_in_window,
    p95,
    print_metric_table,
    refused,
    run_answer,
    token_lags,
)
from bot.core.keys import DISCORD_BUDGET
from bot.core.pacing import EditPacer
from bot.core.request_budget import SharedRequestBudget
from tests.support.redis_server import RedisServer

SHARED_ANSWERS = 60
"""Answers each of the two processes streams at once (one channel each)."""
PROCESSES = 2
RATE = 40
"""DISCORD_REQUESTS_PER_SECOND's default: the bot-wide budget, and each pacer's own."""
BURST = 2
"""SharedRequestBudget's default burst: so at most RATE + BURST start in any second."""
WORKER_TIMEOUT_SECONDS = 120


@dataclass
class TimedGate:
    """The shared budget as the pacer's gate, timing each reservation's round trip to Redis."""

    budget: SharedRequestBudget
    round_trips: list[float] = field(default_factory=list)
    fallbacks: int = 0

    async def reserve(self) -> float:
        """Reserve in the shared budget; note how long it took and whether Redis answered."""
        started = time.perf_counter()
        delay = await self.budget.reserve()
        self.round_trips.append(time.perf_counter() - started)
        self.fallbacks += self.budget.using_fallback
        return delay


@dataclass(frozen=True)
class ProcessResult:
    """What one process measured: its requests and, per answer, first text and lag p95."""

    requests: list[tuple[float, str]]
    first_visible: list[float]
    lag_p95: list[float]
    round_trips: list[float]
    fallbacks: int


async def run_process(index: int, answers: int, redis_url: str | None) -> ProcessResult:
    """Stream `answers` answers through one pacer, sharing the budget in Redis when given."""
    redis = aioredis.Redis.from_url(redis_url) if redis_url is not None else None
    gate = None
    if redis is not None:
        budget = SharedRequestBudget(redis, rate=RATE, local_share=1 / PROCESSES, burst=BURST)
        gate = TimedGate(budget)
    try:
        pacer = EditPacer(global_per_second=RATE, global_gate=gate)
        requests: list[tuple[float, str]] = []
        rng = random.Random(SEED + index)
        sinks = [
            TimedSink(f"{index}-{channel}", AnswerTrace(), requests, rng)
            for channel in range(answers)
        ]
        await asyncio.gather(*(run_answer(sink, pacer) for sink in sinks))
    finally:
        if redis is not None:
            await redis.aclose()
    return ProcessResult(
        requests=requests,
        first_visible=[sink.trace.shown[0][0] - sink.trace.started for sink in sinks],
        lag_p95=[p95(token_lags(sink.trace)) for sink in sinks],
        round_trips=gate.round_trips if gate is not None else [],
        fallbacks=gate.fallbacks if gate is not None else 0,
    )


def process_main(
    index: int, answers: int, redis_url: str | None, start: Barrier, results: Any
) -> None:
    """One bot process: start together with the other, stream, send back what it measured."""
    start.wait()
    results.put((index, asyncio.run(run_process(index, answers, redis_url))))


def run_processes(answers: int, redis_url: str | None) -> tuple[list[ProcessResult], float]:
    """Run PROCESSES processes at once; their results (in process order) and the wall time."""
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(PROCESSES + 1), context.Queue()
    workers = [
        context.Process(target=process_main, args=(index, answers, redis_url, start, results))
        for index in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    start.wait(timeout=WORKER_TIMEOUT_SECONDS)
    wall = time.perf_counter()
    collected = dict(results.get(timeout=WORKER_TIMEOUT_SECONDS) for _ in workers)
    wall = time.perf_counter() - wall
    for worker in workers:
        worker.join(timeout=WORKER_TIMEOUT_SECONDS)
    return [collected[index] for index in range(PROCESSES)], wall


def rate_values(merged: list[float], per_process: list[list[float]]) -> list[str]:
    """The merged timeline's count and rates, and each process's share and peak."""
    return [
        str(len(merged)),
        "/".join(f"{len(times) / len(merged):.0%}" for times in per_process),
        str(most_in_window(merged, 1.0)),
        str(most_in_window(merged, 0.1)),
        f"{len(merged) / (max(merged) - min(merged)):.1f}",
        "/".join(str(most_in_window(times, 1.0)) for times in per_process),
    ]


def column(results: list[ProcessResult], wall: float) -> list[str]:
    """One run's values, in the order of ROW_EXPLANATIONS."""
    requests = [request for result in results for request in result.requests]
    merged = [at for at, _ in requests]
    by_bucket: defaultdict[str, list[float]] = defaultdict(list)
    for at, bucket in requests:
        if not bucket.endswith(":typing"):
            by_bucket[bucket].append(at)
    round_trips = sorted(rtt * 1000 for result in results for rtt in result.round_trips)
    shared = bool(round_trips)
    per_process = [[at for at, _ in result.requests] for result in results]
    return [
        f"{wall:.1f}",
        *rate_values(merged, per_process),
        median_worst([v for result in results for v in result.first_visible]),
        median_worst([v for result in results for v in result.lag_p95]),
        str(refused(merged, DISCORD_GLOBAL_PER_SECOND, 1.0)),
        str(sum(refused(t, DISCORD_BUCKET_LIMIT, BUCKET_WINDOW) for t in by_bucket.values())),
        f"{statistics.median(round_trips):.2f}/{p95(round_trips):.2f}" if shared else "-",
        str(sum(result.fallbacks for result in results)) if shared else "-",
    ]


ROW_EXPLANATIONS = (
    ("wall time, s", "from both processes starting together to the last result"),
    ("requests", "sends, edits and typing of both processes"),
    ("share per process", "each process's part of all requests"),
    (
        "global req/s peak",
        f"most requests of both processes in any sliding 1 s window (shared budget: "
        f"{RATE} + burst {BURST}; local pacing: {RATE} each; Discord {DISCORD_GLOBAL_PER_SECOND})",
    ),
    ("global burst in 0.1 s", "most requests of both processes started within 100 ms"),
    ("global req/s mean", "all requests of both processes over the run"),
    ("req/s peak per process", "each process's most requests in a sliding 1 s window"),
    ("first visible text, s", "from the first token to the end of the first send (median/worst)"),
    ("staleness: lag p95, s", "per answer: token arrival to the request showing it, p95"),
    (
        "429s: global",
        f"requests Discord's {DISCORD_GLOBAL_PER_SECOND} per second per bot would refuse "
        "(fixed windows over the merged timeline)",
    ),
    ("429s: per bucket", "requests Discord's 5 per 5 s per channel would refuse"),
    (
        "budget round trip, ms",
        "one reservation in Redis (the Lua script), as the busy process's loop sees it; median/p95",
    ),
    ("reservations on fallback", "reservations Redis did not answer in time (local share used)"),
)


def rows(redis_url: str, answers: int = SHARED_ANSWERS) -> list[MetricRow]:
    """Both runs (shared budget, local pacing only) as the table's rows."""
    columns = []
    for url in (redis_url, None):
        if url is not None:
            asyncio.run(_forget_budget(url))
        results, wall = run_processes(answers, url)
        columns.append(column(results, wall))
    return [
        MetricRow(name, [values[i] for values in columns], explains)
        for i, (name, explains) in enumerate(ROW_EXPLANATIONS)
    ]


async def _forget_budget(url: str) -> None:
    """Start the shared schedule afresh (no earlier run's reservations)."""
    client = aioredis.Redis.from_url(url)
    try:
        await client.delete(DISCORD_BUDGET)
    finally:
        await client.aclose()


def main(answers: int = SHARED_ANSWERS, columns: Sequence[str] = ("shared", "local only")) -> None:
    """Run both scenarios on a private redis-server and print the table."""
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as workdir:
        server = RedisServer(Path(workdir))
        server.start()
        try:
            table = rows(server.url, answers)
        finally:
            server.stop()
    print(
        f"Two processes sharing one global budget: {PROCESSES} processes x {answers} answers at "
        f"once (one per channel), {TOKENS_PER_SECOND} tokens/s for {STREAM_SECONDS} s each; "
        f"'shared': SharedRequestBudget in Redis ({RATE}/s, burst {BURST}); 'local only': each "
        "EditPacer alone"
    )
    print_metric_table("metric", list(columns), table)
