"""Throughput of the renderer's hot path: `feed()` of many small deltas (not part of the tests).

Run: `.venv/bin/python -m bench.bench_renderer`. Reports microseconds per delta for plain prose
and for a long code block, both split into ~1,990-character messages.
"""

from __future__ import annotations

import time

from bench.table import Row, print_table
from bot.core.events import Completed
from bot.core.renderer import ReplyLayout

DELTAS = 10_000


def measure(name: str, deltas: list[str]) -> Row:
    """Feed `deltas` into a fresh layout; a row with the cost per delta."""
    layout = ReplyLayout()
    began = time.perf_counter()
    for delta in deltas:
        layout.add_text(delta)
    layout.finish(Completed())
    elapsed = time.perf_counter() - began
    parts = len(layout._parts)
    return Row(
        f"renderer: {name}",
        f"{elapsed / len(deltas) * 1e6:.2f} µs/delta",
        f"{len(deltas):,} deltas into {parts} messages",
        "ReplyLayout.add_text per delta, message splitting included",
    )


def rows() -> list[Row]:
    """The renderer rows: prose, one long code block, one-character deltas."""
    code = ["```python\n"] + [f"x{index} = {index}\n" for index in range(DELTAS)] + ["```\n"]
    return [
        measure("prose", [f"word{index % 97} " for index in range(DELTAS)]),
        measure("code block", code),
        measure("one char deltas", list(("Some text, a sentence. " * 500)[:DELTAS])),
    ]


def main() -> None:
    """Run the benchmarks and print their table."""
    print_table("Renderer hot path", rows())


if __name__ == "__main__":
    main()
