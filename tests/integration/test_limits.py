"""Rate limits, daily budgets and usage against a real redis-server, on a clock the test moves."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as ClusterClient

from bot.core.events import Usage
from bot.core.keys import ServerKey
from bot.core.limits import (
    Allowed,
    BudgetSpent,
    TooFast,
    UsageLimits,
    UsageTotals,
    refusal_text,
    report_text,
)
from bot.core.redis_client import RedisClient
from tests.support.redis_target import all_keys

pytestmark = pytest.mark.on_cluster

GUILD = "900"
NOON = datetime(2025, 1, 31, 12, 0, tzinfo=UTC).timestamp()
MIDNIGHT = datetime(2025, 2, 1, tzinfo=UTC).timestamp()


class Clock:
    """A clock that stands still until the test moves it."""

    def __init__(self, now: float = NOON) -> None:
        self.now = now

    def __call__(self) -> float:
        """The current test time, in epoch seconds."""
        return self.now


def limits_for(
    client: aioredis.Redis,
    clock: Clock,
    *,
    rate: int = 6,
    limit_admins: bool = False,
    tokens: int = 0,
    cost: float = 0,
) -> UsageLimits:
    """Limits with the given settings on the test's clock."""
    return UsageLimits(
        client,
        user_rate_per_minute=rate,
        limit_admins=limit_admins,
        daily_tokens=tokens,
        daily_cost_usd=cost,
        clock=clock,
    )


async def test_seventh_answer_in_a_minute_is_refused_until_the_first_leaves_the_window(
    redis_client: aioredis.Redis,
) -> None:
    """Six answers a minute go through; the seventh waits exactly until the oldest is 60 s old."""
    clock = Clock()
    limits = limits_for(redis_client, clock)
    for _ in range(6):
        assert await limits.check(GUILD, "1") == Allowed()
        clock.now += 1
    clock.now = NOON + 37
    assert await limits.check(GUILD, "1") == TooFast(retry_after=23, limit=6)
    clock.now = NOON + 59.5
    assert await limits.check(GUILD, "1") == TooFast(retry_after=0.5, limit=6)
    clock.now = NOON + 60
    assert await limits.check(GUILD, "1") == Allowed()
    assert await limits.check(GUILD, "1") == TooFast(retry_after=1, limit=6)


async def test_a_refused_question_does_not_count(redis_client: aioredis.Redis) -> None:
    """Asking again while refused does not push the next free slot further away."""
    clock = Clock()
    limits = limits_for(redis_client, clock, rate=1)
    assert await limits.check(GUILD, "1") == Allowed()
    for second in range(1, 60):
        clock.now = NOON + second
        assert isinstance(await limits.check(GUILD, "1"), TooFast)
    clock.now = NOON + 60
    assert await limits.check(GUILD, "1") == Allowed()


async def test_the_rate_is_per_member_and_per_server(redis_client: aioredis.Redis) -> None:
    """One member's full window leaves other members and the same member elsewhere free."""
    limits = limits_for(redis_client, Clock(), rate=1)
    assert await limits.check(GUILD, "1") == Allowed()
    assert isinstance(await limits.check(GUILD, "1"), TooFast)
    assert await limits.check(GUILD, "2") == Allowed()
    assert await limits.check("901", "1") == Allowed()


async def test_zero_means_no_rate_limit(redis_client: aioredis.Redis) -> None:
    """USER_RATE_PER_MINUTE=0: any number of answers."""
    limits = limits_for(redis_client, Clock(), rate=0)
    for _ in range(50):
        assert await limits.check(GUILD, "1") == Allowed()


async def test_admins_are_exempt_unless_limit_admins(redis_client: aioredis.Redis) -> None:
    """Manage Server members skip the rate limit, unless LIMIT_ADMINS is on."""
    clock = Clock()
    exempt = limits_for(redis_client, clock, rate=1)
    for _ in range(5):
        assert await exempt.check(GUILD, "1", is_admin=True) == Allowed()
    held = limits_for(redis_client, clock, rate=1, limit_admins=True)
    assert await held.check(GUILD, "2", is_admin=True) == Allowed()
    assert isinstance(await held.check(GUILD, "2", is_admin=True), TooFast)


async def test_token_budget_refuses_until_utc_midnight(redis_client: aioredis.Redis) -> None:
    """Input plus output tokens reaching SERVER_DAILY_TOKENS refuse everyone until midnight UTC."""
    clock = Clock()
    limits = limits_for(redis_client, clock, rate=0, tokens=1000)
    assert await limits.check(GUILD, "1") == Allowed()
    await limits.record(
        GUILD, "1", Usage(input_tokens=599, output_tokens=400, reasoning_tokens=300)
    )
    assert await limits.check(GUILD, "2") == Allowed()
    await limits.record(GUILD, "2", Usage(input_tokens=1, output_tokens=0))
    refused = await limits.check(GUILD, "3", is_admin=True)
    assert refused == BudgetSpent(what="tokens", resets_at=int(MIDNIGHT), resets_in=MIDNIGHT - NOON)
    clock.now = MIDNIGHT - 0.001
    assert isinstance(await limits.check(GUILD, "3"), BudgetSpent)
    clock.now = MIDNIGHT
    assert await limits.check(GUILD, "3") == Allowed()


async def test_cost_budget_sums_exactly(redis_client: aioredis.Redis) -> None:
    """Ten answers of $0.10 spend a $1 budget exactly: no float drift lets an eleventh through."""
    limits = limits_for(redis_client, Clock(), rate=0, cost=1.0)
    for _ in range(9):
        await limits.record(GUILD, "1", Usage(input_tokens=10, output_tokens=5, cost=0.1))
    assert await limits.check(GUILD, "1") == Allowed()
    await limits.record(GUILD, "1", Usage(input_tokens=10, output_tokens=5, cost=0.1))
    verdict = await limits.check(GUILD, "1")
    assert isinstance(verdict, BudgetSpent)
    assert verdict.what == "cost"


async def test_a_spent_budget_does_not_fill_the_rate_window(redis_client: aioredis.Redis) -> None:
    """A question refused for the budget leaves the member's window as it was."""
    clock = Clock()
    limits = limits_for(redis_client, clock, rate=1, tokens=10)
    await limits.record(GUILD, "9", Usage(input_tokens=10))
    assert isinstance(await limits.check(GUILD, "1"), BudgetSpent)
    await limits.set_daily_tokens(GUILD, 0)
    assert await limits.check(GUILD, "1") == Allowed()


async def test_server_overrides_win_over_the_configuration(redis_client: aioredis.Redis) -> None:
    """A server's own budget replaces the configured one; 0 switches it off; None goes back."""
    limits = limits_for(redis_client, Clock(), rate=0, tokens=100, cost=5)
    await limits.record(GUILD, "1", Usage(input_tokens=50, cost=2.5))
    assert await limits.check(GUILD, "1") == Allowed()
    await limits.set_daily_tokens(GUILD, 50)
    assert isinstance(await limits.check(GUILD, "1"), BudgetSpent)
    await limits.set_daily_tokens(GUILD, 0)
    await limits.set_daily_cost(GUILD, 2.5)
    assert await limits.check(GUILD, "1") == BudgetSpent(
        what="cost", resets_at=int(MIDNIGHT), resets_in=MIDNIGHT - NOON
    )
    in_force = await limits.server_limits(GUILD)
    assert (in_force.daily_tokens, in_force.daily_cost_usd) == (0, 2.5)
    assert in_force.tokens_overridden
    assert in_force.cost_overridden
    await limits.set_daily_tokens(GUILD, None)
    await limits.set_daily_cost(GUILD, None)
    in_force = await limits.server_limits(GUILD)
    assert (in_force.daily_tokens, in_force.daily_cost_usd) == (100, 5)
    assert not in_force.tokens_overridden
    assert await limits.check(GUILD, "1") == Allowed()
    assert await limits.check("901", "1") == Allowed()


async def test_negative_budget_is_refused(redis_client: aioredis.Redis) -> None:
    """A budget below zero is a ValueError, not a stored setting."""
    with pytest.raises(ValueError, match="zero"):
        await limits_for(redis_client, Clock()).set_daily_cost(GUILD, -1)


async def test_usage_report_by_day_month_member_and_top(redis_client: aioredis.Redis) -> None:
    """/usage: today and this month for server and member; the day's members by cost."""
    clock = Clock()
    limits = limits_for(redis_client, clock)
    big = Usage(
        input_tokens=1000, output_tokens=500, reasoning_tokens=200, cached_tokens=800, cost=0.02
    )
    await limits.record(GUILD, "1", Usage(input_tokens=10, output_tokens=20, cost=0.001))
    await limits.record(GUILD, "2", big)
    await limits.record(GUILD, "3", Usage(input_tokens=1, output_tokens=1))
    clock.now = MIDNIGHT - 1
    await limits.record(GUILD, "1", Usage(input_tokens=5, output_tokens=5, cost=0.005))
    report = await limits.report(GUILD, "1", top=2)
    assert report.user_today == UsageTotals(2, 15, 25, 0, 0, 6_000_000)
    assert report.user_month == report.user_today
    assert report.server_today.answers == 4
    assert report.server_today.tokens == 10 + 20 + 1500 + 2 + 10
    assert report.server_today.reasoning_tokens == 200
    assert report.server_today.cached_tokens == 800
    assert report.server_today.cost_usd == pytest.approx(0.026)
    assert [(t.user, t.today.cost_nano) for t in report.top] == [
        ("2", 20_000_000),
        ("1", 6_000_000),
    ]
    by_tokens = await limits.report(GUILD, "1", top=5, by="tokens")
    assert [t.user for t in by_tokens.top] == ["2", "1", "3"]


async def test_a_new_day_and_a_new_month_start_from_zero(redis_client: aioredis.Redis) -> None:
    """After UTC midnight on the 1st, today and this month are empty; the ranking too."""
    clock = Clock()
    limits = limits_for(redis_client, clock)
    await limits.record(GUILD, "1", Usage(input_tokens=10, output_tokens=20, cost=0.5))
    clock.now = MIDNIGHT
    report = await limits.report(GUILD, "1", top=3)
    assert report.server_today == report.server_month == report.user_month == UsageTotals()
    assert report.top == []
    await limits.record(GUILD, "1", Usage(input_tokens=1, output_tokens=1))
    clock.now = datetime(2025, 2, 2, tzinfo=UTC).timestamp()
    report = await limits.report(GUILD, "1")
    assert report.server_today == UsageTotals()
    assert report.server_month.tokens == 2


async def test_usage_is_kept_35_days_and_every_key_is_the_servers(
    redis_client: aioredis.Redis,
) -> None:
    """Usage keys expire 35 days after their last write; every key carries the server's tag."""
    limits = limits_for(redis_client, Clock(), tokens=10)
    await limits.check(GUILD, "1")
    await limits.record(GUILD, "1", Usage(input_tokens=1, cost=0.1))
    keys = sorted(await all_keys(redis_client))
    assert keys
    assert all(key.startswith("{g:900}:") for key in keys), keys
    usage_keys = [key for key in keys if ":usage:" in key]
    assert len(usage_keys) == 6
    for key in usage_keys:
        ttl = await redis_client.pttl(key)
        assert 35 * 86400_000 - 60_000 < ttl <= 35 * 86400_000, key


async def test_check_and_record_are_one_script_call_each(redis_client: RedisClient) -> None:
    """Before an answer one EVALSHA (access rules included), after it one EVALSHA: nothing else
    reaches Redis (on a cluster, nothing else reaches the node that holds the server's slot)."""
    limits = limits_for(redis_client, Clock(), tokens=1000, cost=1)
    await limits.check(GUILD, "1")  # loads the scripts
    await limits.record(GUILD, "1", Usage(input_tokens=1))
    await redis_client.sadd(ServerKey(GUILD).access_channels, "5")  # type: ignore[misc]
    await redis_client.sadd(ServerKey(GUILD).access_roles, "7")  # type: ignore[misc]
    if isinstance(redis_client, ClusterClient):
        node = redis_client.get_node_from_key(ServerKey(GUILD).limits)
        await redis_client.config_resetstat(target_nodes=node)
        await limits.check(GUILD, "1", places=["5"], roles=["7"])
        await limits.record(GUILD, "1", Usage(input_tokens=1))
        stats = await redis_client.info("commandstats", target_nodes=node)
    else:
        await redis_client.config_resetstat()
        await limits.check(GUILD, "1", places=["5"], roles=["7"])
        await limits.record(GUILD, "1", Usage(input_tokens=1))
        stats = await redis_client.info("commandstats")
    calls = {name.removeprefix("cmdstat_"): value["calls"] for name, value in stats.items()}
    assert calls.pop("evalsha") == 2
    assert "eval" not in calls
    assert "script|load" not in calls
    # What is left ran inside the two scripts (Redis counts those commands too).
    assert set(calls) <= {
        "config|resetstat",
        "hincrby",
        "hmget",
        "pexpire",
        "scard",
        "sismember",
        "zadd",
        "zcard",
        "zincrby",
        "zremrangebyscore",
        "zrange",
    }, calls


def test_refusal_sentences() -> None:
    """The refusals say when to try again, in whole seconds, or when the budget resets."""
    assert refusal_text(TooFast(retry_after=22.2, limit=6)) == (
        "You have had 6 answers in the last minute, the most allowed. You can ask again in 23 s."
    )
    spent = BudgetSpent(what="cost", resets_at=1738368000, resets_in=3 * 3600 + 1195)
    assert refusal_text(spent) == (
        "This server's daily cost budget for the assistant is used up. "
        "It resets at 00:00 UTC (in 3 h 20 min)."
    )
    discord = refusal_text(spent, reset_text=lambda at, _: f"<t:{at}:R>")
    assert discord.endswith("It resets <t:1738368000:R>.")


async def test_report_text_names_the_top_members(redis_client: aioredis.Redis) -> None:
    """The /usage text shows both periods, the budget and the ranking with the given names."""
    limits = limits_for(redis_client, Clock(), tokens=5000)
    await limits.record(GUILD, "42", Usage(input_tokens=1200, output_tokens=34, cost=0.0123))
    text = report_text(await limits.report(GUILD, "42", top=3), name_of=lambda u: f"<@{u}>")
    assert "**You** today: 1 answer, 1,234 tokens" in text
    assert "$0.0123" in text
    assert "Daily budget: 5,000 tokens, resetting at 00:00 UTC (in 12 h)." in text
    assert "1. <@42>: 1 answer" in text
