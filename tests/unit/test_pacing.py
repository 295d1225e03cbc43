"""The pacer: per-bucket windows, minimum spacing, urgent requests, global budget, fairness."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.core.pacing import WINDOW_MARGIN, EditPacer, PacingBudget
from tests.support.virtual_time import run_virtual


def max_in_window(times: list[float], window: float) -> int:
    """The most timestamps in any half-open window [t, t + window)."""
    ordered = sorted(times)
    return max(
        (sum(1 for other in ordered if start <= other < start + window) for start in ordered),
        default=0,
    )


def test_budget_spaces_ordinary_requests() -> None:
    """Ordinary requests of one bucket start at least min_interval apart."""
    budget = PacingBudget()
    budget.record("c", 10.0)
    assert budget.ready_at("c", urgent=False, now=10.5) == pytest.approx(11.05)
    assert budget.ready_at("c", urgent=True, now=10.5) == 10.5
    assert budget.ready_at("other", urgent=False, now=10.5) == 10.5


def test_budget_window_holds_even_for_urgent() -> None:
    """The sixth request waits until the window plus its margin has passed, urgent or not."""
    budget = PacingBudget()
    for moment in (0.0, 0.1, 0.2, 0.3, 0.4):
        budget.record("c", moment)
    assert budget.ready_at("c", urgent=True, now=0.5) == pytest.approx(5.0 + WINDOW_MARGIN)


def test_window_margin_is_a_parameter() -> None:
    """The margin can be set (0 gives Discord's bare window) and must not be negative."""
    budget = PacingBudget(window_margin=0.0)
    for moment in (0.0, 0.1, 0.2, 0.3, 0.4):
        budget.record("c", moment)
    assert budget.ready_at("c", urgent=True, now=0.5) == pytest.approx(5.0)
    with pytest.raises(ValueError, match="margins"):
        PacingBudget(window_margin=-0.1)


def test_budget_global_limit() -> None:
    """Over all buckets at most global_per_second requests start in any second."""
    budget = PacingBudget(global_per_second=3)
    for index in range(3):
        budget.record(f"c{index}", 0.0)
    assert budget.ready_at("c9", urgent=True, now=0.5) == pytest.approx(1.0)


def test_budget_rejects_nonsense() -> None:
    """Budgets must be positive."""
    with pytest.raises(ValueError, match="positive"):
        PacingBudget(per_bucket=0)


def test_idle_buckets_are_forgotten() -> None:
    """Buckets unused for longer than a window stop taking memory."""
    budget = PacingBudget(global_per_second=10_000)
    for index in range(256):
        budget.record(f"interaction:{index}", float(index * 10))
    assert list(budget._buckets) == ["interaction:255"]


async def _one_bucket_grants(pacer: EditPacer, count: int, *, urgent: bool) -> list[float]:
    """Start `count` requests of bucket "c" one after another; their grant times."""
    loop = asyncio.get_running_loop()
    times = []
    for _ in range(count):
        await pacer.acquire("c", urgent=urgent)
        times.append(loop.time())
    return times


def test_pacer_sequential_requests_keep_interval_and_window() -> None:
    """Twelve ordinary requests come 1.05 s apart, never more than 5 per 5 s."""

    async def scenario() -> list[float]:
        pacer = EditPacer(clock=asyncio.get_running_loop().time)
        return await _one_bucket_grants(pacer, 12, urgent=False)

    times = run_virtual(scenario())
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert min(gaps) >= 1.05 - 1e-9
    assert max_in_window(times, 5.0) <= 5


def test_pacer_urgent_requests_burst_up_to_the_window() -> None:
    """Urgent requests skip the bucket's spacing: five in a burst (only the global budget's
    1/40 s apart), the sixth after the window and its margin."""

    async def scenario() -> list[float]:
        pacer = EditPacer(clock=asyncio.get_running_loop().time)
        return await _one_bucket_grants(pacer, 7, urgent=True)

    times = run_virtual(scenario())
    assert times[4] - times[0] == pytest.approx(4 / 40)
    assert times[5] == pytest.approx(times[0] + 5.0 + WINDOW_MARGIN)
    assert max_in_window(times, 5.0) <= 5


def test_make_urgent_releases_a_waiting_request() -> None:
    """A request that becomes urgent while waiting for the spacing is granted at once."""

    async def scenario() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        pacer = EditPacer(clock=loop.time)
        await pacer.acquire("c")
        start = loop.time()
        slot = pacer.request("c")
        assert not slot.granted
        slot.make_urgent()
        await slot.wait()
        return start, loop.time()

    start, granted = run_virtual(scenario())
    assert granted == pytest.approx(start + 1 / 40)  # the global spacing, not the 1.05 s


def test_urgent_request_goes_before_waiting_ordinary_ones() -> None:
    """Inside a bucket the urgent request is served next."""

    async def scenario() -> list[str]:
        pacer = EditPacer(clock=asyncio.get_running_loop().time)
        await pacer.acquire("c")
        order: list[str] = []

        async def take(name: str, urgent: bool) -> None:
            await pacer.acquire("c", urgent=urgent)
            order.append(name)

        async with asyncio.TaskGroup() as group:
            group.create_task(take("ordinary", False))
            group.create_task(take("final", True))
        return order

    assert run_virtual(scenario()) == ["final", "ordinary"]


def test_cancelled_request_is_withdrawn() -> None:
    """A waiter that is cancelled takes no slot and does not block the others."""

    async def scenario() -> int:
        pacer = EditPacer(clock=asyncio.get_running_loop().time)
        await pacer.acquire("c")
        waiter = asyncio.create_task(pacer.acquire("c"))
        await asyncio.sleep(0.5)
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        await pacer.acquire("c", urgent=True)
        return pacer.waiting

    assert run_virtual(scenario()) == 0


async def test_request_cancelled_in_the_same_loop_turn_is_never_granted() -> None:
    """A waiter cancelled just before a dispatch runs is skipped, not granted (no crash)."""
    now = [0.0]
    timers_may_fire = asyncio.Event()

    async def held_sleep(_seconds: float) -> None:
        await timers_may_fire.wait()

    pacer = EditPacer(clock=lambda: now[0], sleep=held_sleep)
    await pacer.acquire("c")
    slot = pacer.request("c")
    waiting = asyncio.Event()

    async def wait_for_slot() -> None:
        waiting.set()
        await slot.wait()  # suspends here before the test resumes

    waiter = asyncio.create_task(wait_for_slot())
    await waiting.wait()
    now[0] = 2.0  # past min_interval: the waiting slot could be granted at the next dispatch
    waiter.cancel()  # cancels the slot's future now; the waiter's own handler runs later
    await pacer.acquire("other")  # dispatches while the cancelled slot is still queued
    await asyncio.gather(waiter, return_exceptions=True)
    timers_may_fire.set()
    assert waiter.cancelled()
    assert pacer.waiting == 0
    # "c" spent no slot at 2.0: only the global spacing after "other"'s grant remains.
    assert pacer.budget.ready_at("c", urgent=False, now=2.0) == pytest.approx(2.0 + 1 / 40)


def test_global_budget_is_spread_evenly_not_burst() -> None:
    """Many channels at once: grants come at least 1/40 s apart, so no one-second window can
    hold more than the budget even when requests start a little late."""

    async def scenario() -> list[float]:
        loop = asyncio.get_running_loop()
        pacer = EditPacer(clock=loop.time)
        times: list[float] = []

        async def one(bucket: str) -> None:
            await pacer.acquire(bucket, urgent=True)
            times.append(loop.time())

        async with asyncio.TaskGroup() as group:
            for n in range(100):
                group.create_task(one(f"channel:{n}"))
        return sorted(times)

    times = run_virtual(scenario())
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 1 / 40 - 1e-9
    assert max_in_window(times, 1.0) <= 40


def test_background_request_yields_to_ready_ones() -> None:
    """A typing indicator waits while text is ready to go, even if it asked first."""

    async def scenario() -> list[str]:
        loop = asyncio.get_running_loop()
        pacer = EditPacer(global_per_second=1, clock=loop.time)
        await pacer.acquire("warm-up")  # the global budget is now spent for a second
        order: list[str] = []

        async def ask(bucket: str, *, background: bool) -> None:
            await pacer.acquire(bucket, urgent=True, background=background)
            order.append(bucket)

        async with asyncio.TaskGroup() as group:
            group.create_task(ask("a:typing", background=True))
            group.create_task(ask("b", background=False))
        return order

    assert run_virtual(scenario()) == ["b", "a:typing"]


def test_global_budget_is_shared_fairly_between_buckets() -> None:
    """With the global budget the bottleneck, busy buckets get equal shares."""

    async def scenario() -> Counter[str]:
        loop = asyncio.get_running_loop()
        pacer = EditPacer(per_bucket=100, min_interval=0, global_per_second=4, clock=loop.time)
        granted: Counter[str] = Counter()
        deadline = loop.time() + 10

        async def busy(bucket: str) -> None:
            while loop.time() < deadline:
                await pacer.acquire(bucket)
                granted[bucket] += 1
                await asyncio.sleep(0.05)  # the request itself takes (virtual) time

        async with asyncio.TaskGroup() as group:
            for bucket in ("a", "b", "c", "d"):
                group.create_task(busy(bucket))
        return granted

    granted = run_virtual(scenario())
    assert max(granted.values()) - min(granted.values()) <= 1
    assert sum(granted.values()) <= 4 * 11


@settings(max_examples=100, deadline=None)
@given(
    plan=st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c"]),
            st.booleans(),
            st.floats(min_value=0, max_value=3, allow_nan=False),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_no_window_ever_exceeds_the_budget(plan: list[tuple[str, bool, float]]) -> None:
    """Any mix of ordinary and urgent requests stays within 5 per 5 s per bucket."""

    async def scenario() -> dict[str, list[float]]:
        loop = asyncio.get_running_loop()
        pacer = EditPacer(clock=loop.time)
        grants: dict[str, list[float]] = {}

        async def one(bucket: str, urgent: bool, delay: float) -> None:
            await asyncio.sleep(delay)
            await pacer.acquire(bucket, urgent=urgent)
            grants.setdefault(bucket, []).append(loop.time())

        async with asyncio.TaskGroup() as group:
            for bucket, urgent, delay in plan:
                group.create_task(one(bucket, urgent, delay))
        return grants

    grants = run_virtual(scenario())
    assert sum(len(times) for times in grants.values()) == len(plan)
    for times in grants.values():
        assert max_in_window(times, 5.0) <= 5


@settings(max_examples=200, deadline=None)
@given(
    plan=st.lists(
        st.tuples(
            st.sampled_from(["a", "b"]),
            st.booleans(),
            st.floats(min_value=0, max_value=2, allow_nan=False),
            st.floats(min_value=0, max_value=WINDOW_MARGIN, exclude_max=True, allow_nan=False),
        ),
        min_size=6,
        max_size=24,
    )
)
def test_no_window_at_discord_sees_six_despite_jitter(
    plan: list[tuple[str, bool, float, float]],
) -> None:
    """Each request reaches Discord up to WINDOW_MARGIN after its grant (network jitter, a busy
    loop): still no 5.0 s window at Discord's side holds six requests of one bucket."""

    async def scenario() -> dict[str, list[float]]:
        loop = asyncio.get_running_loop()
        pacer = EditPacer(clock=loop.time)
        arrivals: dict[str, list[float]] = {}

        async def one(bucket: str, urgent: bool, delay: float, jitter: float) -> None:
            await asyncio.sleep(delay)
            await pacer.acquire(bucket, urgent=urgent)
            await asyncio.sleep(jitter)  # on its way to Discord
            arrivals.setdefault(bucket, []).append(loop.time())

        async with asyncio.TaskGroup() as group:
            for bucket, urgent, delay, jitter in plan:
                group.create_task(one(bucket, urgent, delay, jitter))
        return arrivals

    for times in run_virtual(scenario()).values():
        assert max_in_window(times, 5.0) <= 5
