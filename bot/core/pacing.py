"""The process-wide pacer of chat API requests: per-bucket and global budgets, shared fairly.

Discord allows about 5 message requests per 5 s per channel (its rate-limit "bucket") and 50
requests per second per bot. One `EditPacer` per process hands out request slots: at most
`per_bucket` per `window` + `window_margin` seconds in any bucket, counted from when each request
started (the margin absorbs network and scheduling jitter, so that no `window` at Discord's side
ever sees one more), ordinary requests of a bucket at least `min_interval` apart, urgent ones (a
reply's first message and final edit) without that spacing but never beyond a budget, and at
most `global_per_second` over all buckets. Waiting requests are served oldest first across buckets
and, inside a bucket, urgent ones first; every renderer asks again only after its request is
done, so this order is a round-robin and no channel or reply starves.

Discord's global budget is per bot, not per process. With several processes a `GlobalGate` (e.g.
`request_budget.SharedRequestBudget`, in Redis) is given: a request the local budget allows then
reserves its start in the bot-wide schedule, and its slot is granted (and counted in its bucket)
only when that start comes, one request per bucket at a time. Without a gate, as in one process,
nothing but the local budget is asked and nothing waits on I/O. Per-bucket budgets stay local:
a channel is only ever served by the process that holds its server's shard.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
_GLOBAL_WINDOW = 1.0
MAX_AT_GATE = 2
"""Requests of this process that may wait at the shared global gate at once. The rest wait here,
where urgent requests go first and typing yields to text: a long queue at the gate would serve
them in arrival order (two keep the gate busy: a reservation is one Redis round trip)."""
WINDOW_MARGIN = 0.2
"""Seconds added to each bucket's window. A request reaches Discord some time after its slot is
granted (the event loop, the network); with six requests spread over exactly 5 s, a first one
that travels slowly and a sixth that travels fast land in one 5 s window at Discord's side and
draw a 429. Spacing every sixth request 5.2 s from the first keeps them apart up to 0.2 s of
jitter, as the 1.05 s `min_interval` does for ordinary requests."""


@dataclass
class _BucketHistory:
    """When the recent slots of one bucket were granted."""

    grants: deque[float] = field(default_factory=deque)
    last: float = -math.inf


class PacingBudget:
    """Pure bookkeeping of granted slots: when may the next request of a bucket start?"""

    def __init__(
        self,
        *,
        per_bucket: int = 5,
        window: float = 5.0,
        window_margin: float = WINDOW_MARGIN,
        min_interval: float = 1.05,
        global_per_second: int = 40,
    ) -> None:
        if per_bucket < 1 or global_per_second < 1 or window <= 0:
            raise ValueError("budgets must be positive")
        if min_interval < 0 or window_margin < 0:
            raise ValueError("intervals and margins must be positive or zero")
        self.per_bucket = per_bucket
        self.window = window + window_margin
        self.min_interval = min_interval
        self.global_per_second = global_per_second
        self._buckets: dict[str, _BucketHistory] = {}
        self._global: deque[float] = deque()
        self._records = 0

    def ready_at(self, bucket: str, *, urgent: bool, now: float) -> float:
        """The earliest time, not before `now`, at which a request of `bucket` may start."""
        at = now
        history = self._buckets.get(bucket)
        if history is not None:
            _expire(history.grants, now - self.window)
            if len(history.grants) >= self.per_bucket:
                at = max(at, history.grants[-self.per_bucket] + self.window)
            if not urgent:
                at = max(at, history.last + self.min_interval)
        _expire(self._global, now - _GLOBAL_WINDOW)
        if len(self._global) >= self.global_per_second:
            at = max(at, self._global[-self.global_per_second] + _GLOBAL_WINDOW)
        if self._global:
            # Spread the global budget evenly: a whole second's worth at once would let
            # scheduling jitter put more than the budget into some one-second window.
            at = max(at, self._global[-1] + _GLOBAL_WINDOW / self.global_per_second)
        return at

    def record(self, bucket: str, now: float) -> None:
        """Note that a request of `bucket` starts at `now`."""
        history = self._buckets.setdefault(bucket, _BucketHistory())
        history.grants.append(now)
        history.last = now
        self._global.append(now)
        self._records += 1
        if self._records % 256 == 0:
            self._forget_idle_buckets(now)

    def _forget_idle_buckets(self, now: float) -> None:
        """Drop buckets whose every grant is too old to matter, so memory stays bounded."""
        horizon = now - max(self.window, self.min_interval)
        idle = [name for name, history in self._buckets.items() if history.last <= horizon]
        for name in idle:
            del self._buckets[name]


def _expire(grants: deque[float], horizon: float) -> None:
    """Remove grants at or before `horizon` (they left the sliding window)."""
    while grants and grants[0] <= horizon:
        grants.popleft()


class GlobalGate(Protocol):
    """The bot-wide budget of requests, shared with the bot's other processes."""

    async def reserve(self) -> float:
        """Reserve one request's start; the seconds to wait before it may start."""
        ...


class SlotRequest:
    """One waiting request for a slot; await `wait()` to start the request when granted."""

    def __init__(
        self, pacer: EditPacer, bucket: str, *, urgent: bool, order: int, background: bool = False
    ) -> None:
        self.bucket = bucket
        self.urgent = urgent
        self.order = order
        self.background = background
        self._pacer = pacer
        self.asked_at = pacer._clock()
        self._granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @property
    def granted(self) -> bool:
        """Whether the slot was given."""
        return self._granted.done() and not self._granted.cancelled()

    @property
    def withdrawn(self) -> bool:
        """Whether the request was cancelled (its waiter may not have noticed yet)."""
        return self._granted.cancelled()

    def make_urgent(self) -> None:
        """Let this request skip the minimum interval (it became a final edit while waiting)."""
        if not self.urgent and not self._granted.done():
            self.urgent = True
            self._pacer._dispatch()

    async def wait(self) -> None:
        """Wait until the slot is granted; being cancelled withdraws the request."""
        try:
            await self._granted
        except asyncio.CancelledError:
            self.cancel()
            raise

    def cancel(self) -> None:
        """Withdraw the request if it is still waiting."""
        if self.granted:
            return
        self._granted.cancel()
        self._pacer._withdraw(self)

    def _grant(self) -> None:
        """Called by the pacer when the slot is given."""
        self._granted.set_result(None)


class EditPacer:
    """Hands out request slots to every renderer of the process (create ONE per process)."""

    def __init__(
        self,
        *,
        per_bucket: int = 5,
        window: float = 5.0,
        window_margin: float = WINDOW_MARGIN,
        min_interval: float = 1.05,
        global_per_second: int = 40,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        on_wait: Callable[[float], None] | None = None,
        global_gate: GlobalGate | None = None,
    ) -> None:
        """`on_wait` hears how long each granted request waited (for metrics); `global_gate`
        shares the global budget with other processes (none: this process's budget only)."""
        self._on_wait = on_wait
        self._gate = global_gate
        self._admitting: dict[str, SlotRequest] = {}
        self._admissions: set[asyncio.Task[None]] = set()
        self.budget = PacingBudget(
            per_bucket=per_bucket,
            window=window,
            window_margin=window_margin,
            min_interval=min_interval,
            global_per_second=global_per_second,
        )
        self._clock = clock
        self._sleep = sleep
        self._waiting: list[SlotRequest] = []
        self._order = itertools.count()
        self._timer: asyncio.Task[None] | None = None
        self._timer_at = math.inf

    def request(
        self, bucket: str, *, urgent: bool = False, background: bool = False
    ) -> SlotRequest:
        """Queue a request for a slot in `bucket`; must be called inside the event loop.

        A `background` request (a typing indicator) goes only when no other is ready."""
        order = next(self._order)
        slot = SlotRequest(self, bucket, urgent=urgent, order=order, background=background)
        self._waiting.append(slot)
        self._dispatch()
        return slot

    async def acquire(self, bucket: str, *, urgent: bool = False, background: bool = False) -> None:
        """Wait for a slot in `bucket`."""
        await self.request(bucket, urgent=urgent, background=background).wait()

    @property
    def waiting(self) -> int:
        """How many requests wait for a slot."""
        return len(self._waiting) + len(self._admitting)

    def _heads(self) -> list[SlotRequest]:
        """Each bucket's next request (oldest urgent, else oldest), oldest first; none of a
        bucket whose previous request still waits for the global gate."""
        heads: dict[str, SlotRequest] = {}
        for slot in self._waiting:
            if slot.bucket in self._admitting:
                continue
            current = heads.get(slot.bucket)
            if current is None or (slot.urgent and not current.urgent):
                heads[slot.bucket] = slot
        return sorted(heads.values(), key=lambda slot: slot.order)

    def _ready_at(self, slot: SlotRequest, now: float) -> float:
        """When `slot` could be granted."""
        return self.budget.ready_at(slot.bucket, urgent=slot.urgent, now=now)

    def _dispatch(self) -> None:
        """Grant every slot that may start now, fairly, and arrange to come back for the rest."""
        now = self._clock()
        # A cancelled waiter's future is cancelled at once, its `wait()` handler runs later.
        self._waiting = [slot for slot in self._waiting if not slot.withdrawn]
        while self._gate is None or len(self._admitting) < MAX_AT_GATE:
            ready_now = [slot for slot in self._heads() if self._ready_at(slot, now) <= now]
            ready = next((slot for slot in ready_now if not slot.background), None)
            ready = ready or next(iter(ready_now), None)
            if ready is None:
                break
            self._waiting.remove(ready)
            if self._gate is None:
                self._grant(ready, now)
            else:
                self._admit(ready)
        self._schedule(now)

    def _grant(self, slot: SlotRequest, now: float) -> None:
        """Count the request as starting now and let it go."""
        self.budget.record(slot.bucket, now)
        slot._grant()
        if self._on_wait is not None:
            self._on_wait(now - slot.asked_at)

    def _admit(self, slot: SlotRequest) -> None:
        """Reserve the slot's start in the global gate in the background, then grant it."""
        self._admitting[slot.bucket] = slot
        task = asyncio.get_running_loop().create_task(self._pass_gate(slot))
        self._admissions.add(task)
        task.add_done_callback(self._admissions.discard)

    async def _pass_gate(self, slot: SlotRequest) -> None:
        """Wait for the reserved start; grant the slot unless it was withdrawn meanwhile."""
        assert self._gate is not None
        try:
            delay = await self._gate.reserve()
        except Exception:
            log.exception("The global request budget failed; this request goes without it")
            delay = 0.0
        try:
            if delay > 0:
                await self._sleep(delay)
        finally:
            del self._admitting[slot.bucket]
            if not slot.withdrawn:
                self._grant(slot, self._clock())
            self._dispatch()

    def _withdraw(self, slot: SlotRequest) -> None:
        """Forget a cancelled request; another of its bucket may now be next."""
        if slot in self._waiting:
            self._waiting.remove(slot)
            self._dispatch()

    def _schedule(self, now: float) -> None:
        """Make sure a timer wakes the pacer when the earliest waiting request may start."""
        if self._gate is not None and len(self._admitting) >= MAX_AT_GATE:
            return  # the gate is full: the next one to pass it dispatches again
        heads = self._heads()
        if not heads:
            return  # nothing waits, or only behind requests at the global gate
        wake = min(self._ready_at(slot, now) for slot in heads)
        if self._timer is not None and self._timer_at <= wake:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = wake
        self._timer = asyncio.get_running_loop().create_task(self._wake_at(wake))

    async def _wake_at(self, when: float) -> None:
        """Sleep until `when`, then grant what became possible."""
        await self._sleep(max(0.0, when - self._clock()))
        self._timer, self._timer_at = None, math.inf
        self._dispatch()
