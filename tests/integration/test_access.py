"""Who may use the assistant: allowed channels and roles, checked in the limits script."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from bot.core.access import MAX_ENTRIES, Access, AccessError, AccessRules
from bot.core.limits import (
    Allowed,
    ChannelNotAllowed,
    RoleNotAllowed,
    TooFast,
    UsageLimits,
    refusal_text,
)

GUILD = "900"


def limits_for(client: aioredis.Redis, *, rate: int = 6) -> UsageLimits:
    """Limits with a per-member rate and no budgets."""
    return UsageLimits(
        client, user_rate_per_minute=rate, limit_admins=False, daily_tokens=0, daily_cost_usd=0
    )


async def test_no_rules_allow_every_channel_and_member(redis_client: aioredis.Redis) -> None:
    """By default the assistant answers everywhere, for everyone."""
    limits = limits_for(redis_client)
    assert await limits.check(GUILD, "1", places=["10"], roles=["900"]) == Allowed()
    assert await AccessRules(redis_client).read(GUILD) == Access()


async def test_only_listed_channels_and_their_threads_are_answered(
    redis_client: aioredis.Redis,
) -> None:
    """With channels listed, another channel is refused; a thread of a listed one is not."""
    limits = limits_for(redis_client)
    rules = AccessRules(redis_client)
    assert await rules.add(GUILD, "channels", "10")
    assert not await rules.add(GUILD, "channels", "10")
    assert await limits.check(GUILD, "1", places=["11"]) == ChannelNotAllowed()
    assert await limits.check(GUILD, "1", places=["10"]) == Allowed()
    assert await limits.check(GUILD, "1", places=["55", "10"]) == Allowed()  # thread, parent
    assert await limits.check(GUILD, "1", places=["11"], is_admin=True) == ChannelNotAllowed()
    await rules.clear(GUILD, "channels")
    assert await limits.check(GUILD, "1", places=["11"]) == Allowed()


async def test_only_listed_roles_may_use_it_and_admins_always_may(
    redis_client: aioredis.Redis,
) -> None:
    """With roles listed, a member without one is refused; Manage Server passes anyway."""
    limits = limits_for(redis_client)
    rules = AccessRules(redis_client)
    await rules.add(GUILD, "roles", "7")
    assert await limits.check(GUILD, "1", roles=["900", "8"]) == RoleNotAllowed()
    assert await limits.check(GUILD, "1", roles=["900", "7"]) == Allowed()
    assert await limits.check(GUILD, "2", roles=["900"], is_admin=True) == Allowed()
    assert await rules.remove(GUILD, "roles", "7")
    assert not await rules.remove(GUILD, "roles", "7")
    assert await limits.check(GUILD, "1", roles=["900"]) == Allowed()


async def test_a_refused_member_does_not_use_up_their_rate(redis_client: aioredis.Redis) -> None:
    """Refusals by channel or role are decided before the window counts anything."""
    limits = limits_for(redis_client, rate=1)
    rules = AccessRules(redis_client)
    await rules.add(GUILD, "roles", "7")
    for _ in range(3):
        assert await limits.check(GUILD, "1", roles=["8"]) == RoleNotAllowed()
    assert await limits.check(GUILD, "1", roles=["7"]) == Allowed()
    assert isinstance(await limits.check(GUILD, "1", roles=["7"]), TooFast)


async def test_rules_list_in_order_and_refuse_what_is_not_an_id(
    redis_client: aioredis.Redis,
) -> None:
    """Ids list as numbers; a non-id and a list past its cap are refused in one sentence."""
    rules = AccessRules(redis_client)
    for channel in ("100", "20", "3"):
        await rules.add(GUILD, "channels", channel)
    assert await rules.read(GUILD) == Access(channels=("3", "20", "100"))
    with pytest.raises(AccessError, match="not a channel or role"):
        await rules.add(GUILD, "roles", "x y")
    for role in range(MAX_ENTRIES):
        await rules.add(GUILD, "roles", str(role + 1))
    with pytest.raises(AccessError, match=f"at most {MAX_ENTRIES} roles"):
        await rules.add(GUILD, "roles", "999999")


def test_refusals_say_why_in_one_line() -> None:
    """A refused member is told in one sentence where to look."""
    for verdict in (ChannelNotAllowed(), RoleNotAllowed()):
        text = refusal_text(verdict)
        assert "\\n" not in text
        assert "/settings" in text
