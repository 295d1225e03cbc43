"""The benchmarks' output: rows of a name, a value, details, and a one-line explanation; and
the latency helpers several benches share."""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    """One line of a result table, with what it measures."""

    name: str
    value: str
    detail: str = ""
    explains: str = ""


def print_table(title: str, rows: Sequence[Row]) -> None:
    """The rows under a title, aligned, each followed by its explanation."""
    width = max(len(row.name) for row in rows)
    value_width = max(len(row.value) for row in rows)
    print(title)
    for row in rows:
        print(f"{row.name:<{width}}  {row.value:>{value_width}}  {row.detail}".rstrip())
        if row.explains:
            print(f"  ↳ {row.explains}")
    print()


def latency_row(name: str, seconds: list[float], explains: str) -> Row:
    """A row with the median latency and the spread."""
    ms = sorted(s * 1000 for s in seconds)
    p95 = ms[int(len(ms) * 0.95) - 1]
    spread = f"p95 {p95:.3f} ms, max {ms[-1]:.3f} ms"
    return Row(name, f"{statistics.median(ms):.3f} ms", spread, explains)


async def timed(count: int, action: Callable[[int], Awaitable[object]]) -> list[float]:
    """Run the awaitable `action(i)` count times; the duration of each."""
    durations = []
    for i in range(count):
        start = time.perf_counter()
        await action(i)
        durations.append(time.perf_counter() - start)
    return durations
