"""An asyncio event loop on virtual time: when nothing is ready, the clock jumps to the next timer.

Code under test uses plain `asyncio.sleep` and `loop.time()`; under this loop a 5-second wait
costs no real time, and the order of events is exactly what the timers say. I/O still works
(the real selector is polled without blocking). A loop with no timer and nothing ready would
wait forever; it raises instead, so a deadlocked test fails rather than hangs.

Code that talks to a real server (Redis, a local aiohttp server) needs `io_grace`: before the
clock jumps, the loop waits up to that many real seconds for an answer already on its way, so a
reply that takes a moment cannot be overtaken by a timeout that virtual time reached first.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
_IDLE_GRACE_SECONDS = 5.0


class _VirtualSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    """A selector that advances the virtual clock instead of blocking on a timeout."""

    def __init__(self, loop: VirtualTimeLoop, io_grace: float) -> None:
        super().__init__()
        self._loop = loop
        self._io_grace = io_grace

    def select(self, timeout: float | None = None) -> list[tuple[Any, int]]:
        """Poll real I/O; if nothing is ready, move virtual time forward by `timeout`."""
        ready: list[tuple[Any, int]] = super().select(0)
        if ready or timeout == 0:
            return ready
        if self._io_grace and (timeout is None or timeout > 0):
            ready = super().select(self._io_grace)
            if ready:
                return ready
        if timeout is None:
            ready = super().select(_IDLE_GRACE_SECONDS)
            if not ready:
                raise RuntimeError("deadlock: nothing is scheduled and nothing can happen")
            return ready
        self._loop.advance(timeout)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose `time()` is virtual, starting at 1000.0."""

    def __init__(self, io_grace: float = 0.0) -> None:
        self._virtual_now = 1000.0
        super().__init__(_VirtualSelector(self, io_grace))

    def time(self) -> float:
        """The virtual time."""
        return self._virtual_now

    def advance(self, seconds: float) -> None:
        """Move virtual time forward."""
        self._virtual_now += seconds


def run_virtual(main: Coroutine[Any, Any, T], *, io_grace: float = 0.0) -> T:
    """Run a coroutine to completion on a fresh virtual-time loop (see `io_grace` above)."""
    with asyncio.Runner(loop_factory=lambda: VirtualTimeLoop(io_grace)) as runner:
        return runner.run(main)
