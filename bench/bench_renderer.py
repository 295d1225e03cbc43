"""Throughput of the renderer's hot path: `feed()` of many small deltas (not part of the tests).

Run: `.venv/bin/python bench/bench_renderer.py`. Reports microseconds per delta for plain prose
and for a long code block, both split into ~1,990-character messages.
"""

from __future__ import annotations

import time

from bot.core.events import Completed
from bot.core.renderer import ReplyLayout

DELTAS = 10_000


def _measure(name: str, deltas: list[str]) -> None:
    """Feed `deltas` into a fresh layout and print the cost per delta."""
    layout = ReplyLayout()
    began = time.perf_counter()
    for delta in deltas:
        layout.add_text(delta)
    layout.finish(Completed())
    elapsed = time.perf_counter() - began
    parts = len(layout._parts)
    print(f"{name}: {elapsed / len(deltas) * 1e6:.2f} µs/delta, {parts} messages")


def main() -> None:
    """Run the benchmarks."""
    _measure("prose", [f"word{index % 97} " for index in range(DELTAS)])
    code = ["```python\n"] + [f"x{index} = {index}\n" for index in range(DELTAS)] + ["```\n"]
    _measure("code block", code)
    _measure("one char deltas", list(("Some text, a sentence. " * 500)[:DELTAS]))


if __name__ == "__main__":
    main()
