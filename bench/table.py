"""The benchmarks' output: rows of a name, a value, details, and a one-line explanation."""

from __future__ import annotations

from collections.abc import Sequence
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
