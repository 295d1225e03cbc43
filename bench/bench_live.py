"""Live replies under load, in real time: many answers stream at once through one EditPacer.

Each answer is a token generator (after FIRST_TOKEN_SECONDS of typing, TOKENS_PER_SECOND for
STREAM_SECONDS) feeding a real `ReplyRenderer`; every renderer shares one `EditPacer` with the
bot's defaults, and its sink takes a random 50-150 ms per send/edit like Discord does. Run
alone with `python -m bench.bench_live`. Token `i` is the word
`w<i>`, so the highest word visible in a reply's messages says how much of the stream is shown.
Reported per scenario (a column): time to first visible text, the lag between a token's arrival
and the request that first shows it, updates per second, the most requests any rate-limit bucket
got in a 5 s window, and the global request rate.

Then the same at scale (`python -m bench.bench_live load` runs only this part): LOAD_ANSWERS
answers streaming at once in one process, one per channel, with the CPU seconds and the peak RSS
of the process during the run, staleness (the lag, and the longest time a reply went without an
update), requests per bucket and globally, and how many requests Discord's limits (5 per 5 s
per channel, 50 per second globally) would have answered with 429.

Two processes sharing the global budget are in bench_shared (`python -m bench.bench_live
shared` runs only that part).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import re
import resource
import statistics
import sys
import time as clock
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from bot.core.events import Completed, TextDelta
from bot.core.pacing import EditPacer
from bot.core.renderer import ReplyRenderer, SentMessage

TOKENS_PER_SECOND = 30
STREAM_SECONDS = 10
FIRST_TOKEN_SECONDS = 0.5
"""The model's time to first token; the reply shows typing meanwhile."""
LATENCY_SECONDS = (0.05, 0.15)
BUCKET_WINDOW = 5.0
LOAD_ANSWERS = 200
DISCORD_BUCKET_LIMIT = 5
"""Message creates and edits Discord allows per channel per BUCKET_WINDOW."""
DISCORD_GLOBAL_PER_SECOND = 50
RSS_SAMPLE_SECONDS = 0.05
SEED = 7
_WORD = re.compile(r"w(\d+)")


@dataclass(frozen=True)
class Scenario:
    """A load to run: `channels` channels, each with `answers` answers streaming at once."""

    name: str
    channels: int
    answers: int = 1


SCENARIOS = (
    Scenario("1 ch", 1),
    Scenario("10 ch", 10),
    Scenario("50 ch", 50),
    Scenario("3 in 1 ch", 1, answers=3),
)


@dataclass
class AnswerTrace:
    """When each token of one answer arrived, and when each request finished showing what."""

    tokens: list[float] = field(default_factory=list)
    shown: list[tuple[float, int]] = field(default_factory=list)
    writes: int = 0
    started: float = 0.0


@dataclass
class TimedSink:
    """A `MessageSink` with Discord-like latency that records what each answer shows, and when."""

    channel: str
    trace: AnswerTrace
    requests: list[tuple[float, str]]
    rng: random.Random
    highest: dict[str, int] = field(default_factory=dict)

    @property
    def send_bucket(self) -> str:
        """The channel's rate-limit bucket."""
        return f"channel:{self.channel}"

    async def send(self, content: str, *, first: bool) -> SentMessage:
        """Post a message after a realistic delay."""
        message = SentMessage(f"{id(self)}-{len(self.highest)}", self.send_bucket)
        self.highest[message.id] = -1
        await self._request(message, content)
        return message

    async def edit(self, message: SentMessage, content: str) -> None:
        """Replace a message's content after a realistic delay."""
        await self._request(message, content)

    async def typing(self) -> None:
        """Show typing (a request of its own bucket)."""
        self.requests.append((asyncio.get_running_loop().time(), f"{self.send_bucket}:typing"))

    async def _request(self, message: SentMessage, content: str) -> None:
        """Take the request's time, then note the highest token the reply shows."""
        loop = asyncio.get_running_loop()
        self.requests.append((loop.time(), message.bucket))
        await asyncio.sleep(self.rng.uniform(*LATENCY_SECONDS))
        words = _WORD.findall(content)
        self.highest[message.id] = int(words[-1]) if words else -1
        self.trace.writes += 1
        self.trace.shown.append((loop.time(), max(self.highest.values())))


async def stream_answer(renderer: ReplyRenderer, trace: AnswerTrace) -> None:
    """After the first-token delay, feed TOKENS_PER_SECOND tokens for STREAM_SECONDS, complete."""
    loop = asyncio.get_running_loop()
    await asyncio.sleep(FIRST_TOKEN_SECONDS)
    trace.started = loop.time()
    for index in range(TOKENS_PER_SECOND * STREAM_SECONDS):
        due = trace.started + index / TOKENS_PER_SECOND
        await asyncio.sleep(max(0.0, due - loop.time()))
        trace.tokens.append(loop.time())
        renderer.feed(TextDelta(f"w{index} "))
    renderer.feed(Completed())


async def run_answer(sink: TimedSink, pacer: EditPacer) -> None:
    """Stream one answer through a real renderer until it is fully shown."""
    renderer = ReplyRenderer(sink, pacer)
    rendering = asyncio.create_task(renderer.run())
    await stream_answer(renderer, sink.trace)
    await rendering


async def run_scenario(scenario: Scenario) -> tuple[list[AnswerTrace], list[tuple[float, str]]]:
    """Run every answer of a scenario at once; their traces and all requests made."""
    rng = random.Random(SEED)
    pacer = EditPacer()
    requests: list[tuple[float, str]] = []
    sinks = [
        TimedSink(str(channel), AnswerTrace(), requests, rng)
        for channel in range(scenario.channels)
        for _ in range(scenario.answers)
    ]
    await asyncio.gather(*(run_answer(sink, pacer) for sink in sinks))
    return [sink.trace for sink in sinks], requests


def token_lags(trace: AnswerTrace) -> list[float]:
    """For every token, seconds from its arrival to the end of the request that first shows it."""
    lags = []
    shown = iter(trace.shown)
    at, highest = -1.0, -1
    for index, arrived in enumerate(trace.tokens):
        while highest < index:
            at, highest = next(shown)
        lags.append(at - arrived)
    return lags


def p95(values: Sequence[float]) -> float:
    """The 95th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[max(0, round(len(ordered) * 0.95) - 1)]


def most_in_window(times: Sequence[float], window: float) -> int:
    """The most request start times that fall in any `window`-second span."""
    ordered, most, low = sorted(times), 0, 0
    for high, time in enumerate(ordered):
        while time - ordered[low] >= window:
            low += 1
        most = max(most, high - low + 1)
    return most


@dataclass(frozen=True)
class ScenarioStats:
    """The numbers of one scenario, summarised over its answers (median and worst)."""

    first_visible: list[float]
    lag_mean: list[float]
    lag_p95: list[float]
    updates_per_second: list[float]
    bucket_peak: int
    global_peak: int
    global_burst: int
    global_mean: float


def summarise(traces: list[AnswerTrace], requests: list[tuple[float, str]]) -> ScenarioStats:
    """Per-answer numbers and the rate-limit peaks of one scenario."""
    lags = [token_lags(trace) for trace in traces]
    by_bucket: defaultdict[str, list[float]] = defaultdict(list)
    for time, bucket in requests:
        by_bucket[bucket].append(time)
    times = [time for time, _ in requests]
    message_buckets = [t for b, t in by_bucket.items() if not b.endswith(":typing")]
    return ScenarioStats(
        first_visible=[trace.shown[0][0] - trace.started for trace in traces],
        lag_mean=[statistics.fmean(lag) for lag in lags],
        lag_p95=[p95(lag) for lag in lags],
        updates_per_second=[
            trace.writes / (trace.shown[-1][0] - trace.started) for trace in traces
        ],
        bucket_peak=max(most_in_window(t, BUCKET_WINDOW) for t in message_buckets),
        global_peak=most_in_window(times, 1.0),
        global_burst=most_in_window(times, 0.1),
        global_mean=len(times) / (max(times) - min(times)),
    )


@dataclass(frozen=True)
class MetricRow:
    """One metric across the scenarios, with what it means."""

    name: str
    values: list[str]
    explains: str


def median_worst(values: list[float], *, worst_is_low: bool = False) -> str:
    """ "median/worst" of per-answer values (just the value when there is one answer)."""
    worst = min(values) if worst_is_low else max(values)
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.median(values):.2f}/{worst:.2f}"


def metric_rows(stats: list[ScenarioStats]) -> list[MetricRow]:
    """The table's rows: one per metric, one value per scenario."""
    return [
        MetricRow(
            "first visible text, s",
            [median_worst(s.first_visible) for s in stats],
            "from the first token (after 0.5 s of typing) to the end of the first send",
        ),
        MetricRow(
            "lag mean, s",
            [median_worst(s.lag_mean) for s in stats],
            "per token: arrival to the end of the request that first shows it (mean)",
        ),
        MetricRow(
            "lag p95, s",
            [median_worst(s.lag_p95) for s in stats],
            "the same lag, 95th percentile over the answer's tokens",
        ),
        MetricRow(
            "updates/s per answer",
            [median_worst(s.updates_per_second, worst_is_low=True) for s in stats],
            "sends+edits of one answer per second from its first token to its final edit",
        ),
        MetricRow(
            "max req in 5 s/bucket",
            [str(s.bucket_peak) for s in stats],
            "most message requests any channel got in a sliding 5 s window (Discord allows 5)",
        ),
        MetricRow(
            "global req/s peak",
            [str(s.global_peak) for s in stats],
            "most requests started in any sliding 1 s window (pacer allows 40, Discord 50)",
        ),
        MetricRow(
            "global burst in 0.1 s",
            [str(s.global_burst) for s in stats],
            "most requests of all channels started within 100 ms (how bursty the pacer is)",
        ),
        MetricRow(
            "global req/s mean",
            [f"{s.global_mean:.1f}" for s in stats],
            "all requests (typing included) over the run",
        ),
    ]


def print_metric_table(title: str, columns: Sequence[str], rows: list[MetricRow]) -> None:
    """The rows as an aligned table, each followed by its one-line explanation."""
    name_width = max(len(title), *(len(row.name) for row in rows))
    widths = [max(len(col), *(len(row.values[i]) for row in rows)) for i, col in enumerate(columns)]
    cells = "  ".join(f"{col:>{width}}" for col, width in zip(columns, widths, strict=True))
    print(f"{title:<{name_width}}  {cells}")
    for row in rows:
        cells = "  ".join(f"{v:>{w}}" for v, w in zip(row.values, widths, strict=True))
        print(f"{row.name:<{name_width}}  {cells}")
        print(f"  ↳ {row.explains}")


def main(scenarios: Sequence[Scenario] = SCENARIOS) -> None:
    """Run each scenario in turn (one pacer each) and print the table."""
    stats = []
    for scenario in scenarios:
        traces, requests = asyncio.run(run_scenario(scenario))
        stats.append(summarise(traces, requests))
    print(
        f"Live replies: {TOKENS_PER_SECOND} tokens/s for {STREAM_SECONDS} s per answer, "
        f"send/edit {LATENCY_SECONDS[0] * 1000:.0f}-{LATENCY_SECONDS[1] * 1000:.0f} ms, "
        "EditPacer defaults; cells are median/worst over the answers"
    )
    print_metric_table("metric", [s.name for s in scenarios], metric_rows(stats))


def refused(times: Sequence[float], limit: int, window: float) -> int:
    """How many requests a fixed-window limit of `limit` per `window` s would refuse (429).

    Windows start at a bucket's first request after the previous window ended, as Discord's
    do; a refused request does not count against the window (it would be retried later).
    """
    count, started, used = 0, float("-inf"), 0
    for at in sorted(times):
        if at - started >= window:
            started, used = at, 0
        if used >= limit:
            count += 1
        else:
            used += 1
    return count


def longest_gap(trace: AnswerTrace) -> float:
    """The longest time between two updates of one reply, from its first token to its end."""
    times = [trace.started, *(at for at, _ in trace.shown)]
    return max(later - earlier for earlier, later in itertools.pairwise(times))


def rss_bytes() -> int:
    """The process's resident set size now (Linux /proc), in bytes."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize()


@dataclass
class LoadRun:
    """One scale run: its traces and requests, CPU seconds, wall seconds and RSS."""

    traces: list[AnswerTrace]
    requests: list[tuple[float, str]]
    cpu_seconds: float
    wall_seconds: float
    rss_before: int
    rss_peak: int


async def run_load(answers: int) -> LoadRun:
    """Run `answers` answers at once, one per channel, sampling the RSS while they stream."""
    peak = before = rss_bytes()
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_bytes())
            await asyncio.sleep(RSS_SAMPLE_SECONDS)

    sampler = asyncio.create_task(sample())
    cpu, wall = clock.process_time(), clock.perf_counter()
    traces, requests = await run_scenario(Scenario(f"{answers} ch", answers))
    cpu, wall = clock.process_time() - cpu, clock.perf_counter() - wall
    done.set()
    await sampler
    return LoadRun(traces, requests, cpu, wall, before, max(peak, rss_bytes()))


def load_rows(run: LoadRun) -> list[MetricRow]:
    """The scale table: cost in the process, staleness, requests and would-be 429s."""
    stats = summarise(run.traces, run.requests)
    gaps = [longest_gap(trace) for trace in run.traces]
    message_times: defaultdict[str, list[float]] = defaultdict(list)
    for at, bucket in run.requests:
        if not bucket.endswith(":typing"):
            message_times[bucket].append(at)
    bucket_429 = sum(
        refused(times, DISCORD_BUCKET_LIMIT, BUCKET_WINDOW) for times in message_times.values()
    )
    global_429 = refused([at for at, _ in run.requests], DISCORD_GLOBAL_PER_SECOND, 1.0)
    mib = 1024 * 1024
    rows = [
        ("CPU seconds", f"{run.cpu_seconds:.1f}", f"in {run.wall_seconds:.1f} s of wall time "
         f"({run.cpu_seconds / run.wall_seconds:.0%} of one core): renderers, pacer, sinks"),
        ("peak RSS, MiB", f"{run.rss_peak / mib:.0f}",
         f"the whole process, sampled every 50 ms ({(run.rss_peak - run.rss_before) / mib:+.0f} "
         "MiB over the start of the run)"),
        ("first visible text, s", median_worst(stats.first_visible),
         "from the first token to the end of the first send (median/worst)"),
        ("staleness: lag mean, s", median_worst(stats.lag_mean),
         "per token: arrival to the end of the request that first shows it"),
        ("staleness: lag p95, s", median_worst(stats.lag_p95),
         "the same lag, 95th percentile over the answer's tokens"),
        ("staleness: longest gap, s", median_worst(gaps),
         "longest time a streaming reply went without an update"),
        ("updates/s per answer", median_worst(stats.updates_per_second, worst_is_low=True),
         "sends+edits of one answer per second"),
        ("max req in 5 s/bucket", str(stats.bucket_peak),
         "most message requests one channel got in a sliding 5 s window (Discord allows 5)"),
        ("global req/s peak", str(stats.global_peak),
         "most requests started in any sliding 1 s window (pacer allows 40, Discord 50)"),
        ("global req/s mean", f"{stats.global_mean:.1f}", "all requests (typing included)"),
        ("requests", str(len(run.requests)), "sends, edits and typing of all the answers"),
        ("429s: per bucket", str(bucket_429),
         "requests Discord's 5 per 5 s per channel would refuse (fixed windows)"),
        ("429s: global", str(global_429),
         "requests Discord's 50 per second per bot would refuse (fixed windows)"),
    ]  # fmt: skip
    return [MetricRow(name, [value], explains) for name, value, explains in rows]


def load_main(answers: int = LOAD_ANSWERS) -> None:
    """Run the scale scenario alone and print its table."""
    run = asyncio.run(run_load(answers))
    print(
        f"Live replies at scale: {answers} answers streaming at once in one process, one per "
        f"channel, {TOKENS_PER_SECOND} tokens/s for {STREAM_SECONDS} s each, one EditPacer"
    )
    print_metric_table("metric", [f"{answers} ch"], load_rows(run))


if __name__ == "__main__":
    if sys.argv[1:] == ["load"]:
        load_main()
    elif sys.argv[1:] == ["shared"]:
        from bench import bench_shared

        bench_shared.main()
    else:
        main()
        print()
        load_main()
