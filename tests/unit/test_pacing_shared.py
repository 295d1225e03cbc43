"""The pacer with a global gate (the bot-wide budget several processes share): together within
the gate's rate, buckets counted from when requests really start, withdrawals, the local gate."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from bot.core.pacing import WINDOW_MARGIN, EditPacer
from bot.core.request_budget import LocalRequestBudget
from tests.support.virtual_time import run_virtual
from tests.unit.test_pacing import max_in_window


async def _stream(pacer: EditPacer, bucket: str, count: int, grants: list[float]) -> None:
    """Ask for `count` ordinary slots of one bucket one after another, noting grant times."""
    loop = asyncio.get_running_loop()
    for _ in range(count):
        await pacer.acquire(bucket)
        grants.append(loop.time())


def test_two_pacers_sharing_a_gate_stay_within_its_rate() -> None:
    """Two processes' pacers, 12 channels each, never start more than the gate's rate plus its
    burst in any second, though each alone would allow 40 per second."""

    async def scenario() -> list[float]:
        clock = asyncio.get_running_loop().time
        gate = LocalRequestBudget(10, burst=2, clock=clock)
        pacers = [EditPacer(clock=clock, global_gate=gate) for _ in range(2)]
        grants: list[float] = []
        async with asyncio.TaskGroup() as group:
            for pacer, channel in itertools.product(pacers, range(12)):
                group.create_task(_stream(pacer, f"channel:{channel}", 4, grants))
        return grants

    grants = run_virtual(scenario())
    assert len(grants) == 96
    assert max_in_window(grants, 1.0) <= 10 + 2


def test_without_a_gate_the_same_load_goes_faster_than_the_shared_rate() -> None:
    """The control for the test above: each pacer alone lets its 12 channels go at once."""

    async def scenario() -> list[float]:
        clock = asyncio.get_running_loop().time
        pacers = [EditPacer(clock=clock) for _ in range(2)]
        grants: list[float] = []
        async with asyncio.TaskGroup() as group:
            for pacer, channel in itertools.product(pacers, range(12)):
                group.create_task(_stream(pacer, f"channel:{channel}", 4, grants))
        return grants

    assert max_in_window(run_virtual(scenario()), 1.0) > 12


def test_bucket_window_counts_from_the_real_start_after_the_gate() -> None:
    """Urgent requests of one bucket that the gate holds back are counted when they start, so
    the sixth still comes a whole window (and margin) after the first really started."""

    async def scenario() -> list[float]:
        loop = asyncio.get_running_loop()
        gate = LocalRequestBudget(2, burst=1, clock=loop.time)
        pacer = EditPacer(clock=loop.time, global_gate=gate)
        # Another process took the gate's next two seconds just before.
        gate.reserve_now()
        gate.reserve_now()
        gate.reserve_now()
        grants = []
        for _ in range(6):
            await pacer.acquire("c", urgent=True)
            grants.append(loop.time())
        return grants

    grants = run_virtual(scenario())
    assert grants[0] == pytest.approx(1000.0 + 1.5)
    assert grants[5] - grants[0] >= 5.0 + WINDOW_MARGIN - 1e-9
    assert max_in_window(grants, 5.0 + WINDOW_MARGIN) <= 5


def test_request_withdrawn_at_the_gate_is_not_granted_and_frees_its_bucket() -> None:
    """A request cancelled while it waits for its reserved start never starts; the next request
    of its bucket is served after it."""

    async def scenario() -> tuple[bool, float]:
        loop = asyncio.get_running_loop()
        gate = LocalRequestBudget(1, burst=1, clock=loop.time)
        pacer = EditPacer(clock=loop.time, global_gate=gate)
        gate.reserve_now()  # the gate's first second is taken
        first = pacer.request("c", urgent=True)
        await asyncio.sleep(0.1)
        first.cancel()
        second = pacer.request("c", urgent=True)
        await second.wait()
        return first.granted, loop.time()

    granted, at = run_virtual(scenario())
    assert granted is False
    assert at == pytest.approx(1000.0 + 2.0)  # after the withdrawn request's reserved second


def test_local_budget_spaces_requests_after_its_burst() -> None:
    """The local schedule lets `burst` start at once, then one every 1/rate seconds."""
    now = [100.0]
    budget = LocalRequestBudget(4, burst=2, clock=lambda: now[0])
    assert [budget.reserve_now() for _ in range(4)] == pytest.approx([0, 0, 0.25, 0.5])
    now[0] += 10
    assert budget.reserve_now() == 0
    with pytest.raises(ValueError, match="positive"):
        LocalRequestBudget(0)


def test_a_busy_gate_still_serves_an_urgent_request_first() -> None:
    """With 30 typing requests waiting on a slow shared gate, a final edit asked for later still
    goes within the next few grants: only a couple of requests wait at the gate at once, the
    rest in the pacer, where urgent ones go first and typing yields."""

    async def scenario() -> tuple[list[str], int]:
        loop = asyncio.get_running_loop()
        gate = LocalRequestBudget(5, burst=1, clock=loop.time)
        pacer = EditPacer(clock=loop.time, global_gate=gate)
        order: list[str] = []

        async def one(bucket: str, **kwargs: bool) -> None:
            await pacer.acquire(bucket, **kwargs)
            order.append(bucket)

        async with asyncio.TaskGroup() as group:
            for channel in range(30):
                group.create_task(one(f"channel:{channel}:typing", background=True))
            await asyncio.sleep(0)
            group.create_task(one("channel:final", urgent=True))
            waiting_at_gate = len(pacer._admitting)
        return order, waiting_at_gate

    order, waiting_at_gate = run_virtual(scenario())
    assert waiting_at_gate <= 2
    assert order.index("channel:final") <= 2
