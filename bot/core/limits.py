"""Per-member rate limits, per-server daily budgets and usage accounting, kept in Redis.

Everything of one server lives under its hash tag `{g:<guild>}` (see `ServerKey`), so each
script below touches one Cluster slot. Before an answer, `UsageLimits.check` is one round trip
(one script: who may use the assistant where, see `bot.core.access`; the server's daily budget
with its overrides; then the member's sliding window, which records the answer when it is
allowed). After an answer, `UsageLimits.record` is one round
trip too: answers, tokens and cost per day and per month, for the server and for the member,
plus the day's ranking of members. Usage keys expire `USAGE_TTL_SECONDS` after their last write.

Days and months are UTC. Tokens are input plus output tokens as the API reports them (output
tokens include reasoning tokens); cost is OpenRouter's reported cost, kept in nano-dollars so
that sums are exact. A budget is checked before an answer, so the answer that crosses it still
runs; the next one is refused until the next UTC midnight.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

from bot.core.events import Usage
from bot.core.keys import ServerKey
from bot.core.redis_client import RedisClient, register_script

Clock = Callable[[], float]
"""A callable returning the time as epoch seconds (`time.time`, or a test's own)."""

WINDOW_SECONDS: Final = 60
USAGE_TTL_SECONDS: Final = 35 * 24 * 3600
NANO: Final = 1_000_000_000
"""Nano-dollars per dollar: costs are summed as integers of this unit."""
TOKENS_FIELD: Final = "daily_tokens"
COST_FIELD: Final = "daily_cost_usd"

# KEYS: the member's window, the server's usage hash of today, the server's limits hash, the
# server's members index, the sets of allowed channels and allowed roles. ARGV: now (ms), window
# (ms), the member's limit (0: none), the default daily tokens and cost (nano-dollars; 0: none),
# a unique window entry, the member id, how long the members index keeps an idle member (ms),
# whether the member may skip the role rule (1/0), how many channel ids follow, those ids (the
# channel and, for a thread, its parent), then the member's role ids. Returns {4} when the
# channel is not allowed, {5} when none of the member's roles is, {0} when allowed (and records
# the answer in the window), {1, ms until a slot frees, limit}, {2, spent, limit} for tokens or
# {3, ...} for cost. Overrides in the limits hash: absent = the default; "0" = no limit on this
# server. An empty set of channels or roles allows all.
_CHECK_LUA: Final = """
local places = tonumber(ARGV[10])
if places > 0 and redis.call('SCARD', KEYS[5]) > 0 then
  local found = false
  for i = 11, 10 + places do
    if redis.call('SISMEMBER', KEYS[5], ARGV[i]) == 1 then found = true end
  end
  if not found then return {4} end
end
if ARGV[9] ~= '1' and redis.call('SCARD', KEYS[6]) > 0 then
  local found = false
  for i = 11 + places, #ARGV do
    if redis.call('SISMEMBER', KEYS[6], ARGV[i]) == 1 then found = true end
  end
  if not found then return {5} end
end
local now, window, rate = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local max_tokens, max_cost = tonumber(ARGV[4]), tonumber(ARGV[5])
local overrides = redis.call('HMGET', KEYS[3], 'daily_tokens', 'daily_cost_usd')
if overrides[1] then max_tokens = tonumber(overrides[1]) or max_tokens end
if overrides[2] then
  local usd = tonumber(overrides[2])
  if usd then max_cost = math.floor(usd * 1e9 + 0.5) end
end
local spent = redis.call('HMGET', KEYS[2], 'tokens', 'cost_nano')
local tokens, cost = tonumber(spent[1]) or 0, tonumber(spent[2]) or 0
if max_tokens > 0 and tokens >= max_tokens then return {2, tokens, max_tokens} end
if max_cost > 0 and cost >= max_cost then return {3, cost, max_cost} end
if rate > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
  local count = redis.call('ZCARD', KEYS[1])
  if count >= rate then
    local frees = redis.call('ZRANGE', KEYS[1], count - rate, count - rate, 'WITHSCORES')
    return {1, tonumber(frees[2]) + window - now, rate}
  end
  redis.call('ZADD', KEYS[1], now, ARGV[6])
  redis.call('PEXPIRE', KEYS[1], window)
  local keep = tonumber(ARGV[8])
  redis.call('ZADD', KEYS[4], now, ARGV[7])
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - keep)
  redis.call('PEXPIRE', KEYS[4], keep)
end
return {0}
"""

# KEYS: the usage hashes (server today, member today, server this month, member this month),
# the day's rankings by cost and by tokens, the server's members index. ARGV: the member id,
# input, output, reasoning and cached tokens, cost (nano-dollars), TTL (ms), now (ms).
_RECORD_LUA: Final = """
local user, ttl, now = ARGV[1], tonumber(ARGV[7]), tonumber(ARGV[8])
local input, output, cost = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[6])
for i = 1, 4 do
  redis.call('HINCRBY', KEYS[i], 'answers', 1)
  redis.call('HINCRBY', KEYS[i], 'tokens', input + output)
  redis.call('HINCRBY', KEYS[i], 'input', input)
  redis.call('HINCRBY', KEYS[i], 'output', output)
  redis.call('HINCRBY', KEYS[i], 'reasoning', tonumber(ARGV[4]))
  redis.call('HINCRBY', KEYS[i], 'cached', tonumber(ARGV[5]))
  redis.call('HINCRBY', KEYS[i], 'cost_nano', cost)
  redis.call('PEXPIRE', KEYS[i], ttl)
end
redis.call('ZINCRBY', KEYS[5], cost, user)
redis.call('ZINCRBY', KEYS[6], input + output, user)
redis.call('ZADD', KEYS[7], now, user)
redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', now - ttl)
for i = 5, 7 do
  redis.call('PEXPIRE', KEYS[i], ttl)
end
return 1
"""


@dataclass(frozen=True, slots=True)
class Allowed:
    """The answer may go ahead; it has been counted in the member's window."""


@dataclass(frozen=True, slots=True)
class TooFast:
    """The member asked `limit` times within the last minute; a slot frees in `retry_after` s."""

    retry_after: float
    limit: int


@dataclass(frozen=True, slots=True)
class BudgetSpent:
    """The server's daily budget of tokens or cost is used up until `resets_at` (UTC midnight)."""

    what: Literal["tokens", "cost"]
    resets_at: int
    resets_in: float


@dataclass(frozen=True, slots=True)
class ChannelNotAllowed:
    """The server lets the assistant answer only in other channels."""


@dataclass(frozen=True, slots=True)
class RoleNotAllowed:
    """The server lets only members with certain roles use the assistant."""


Verdict = Allowed | TooFast | BudgetSpent | ChannelNotAllowed | RoleNotAllowed
Refusal = TooFast | BudgetSpent | ChannelNotAllowed | RoleNotAllowed


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """The daily budgets in force for one server (0: none), and whether each is the server's own."""

    daily_tokens: int
    daily_cost_usd: float
    tokens_overridden: bool
    cost_overridden: bool


@dataclass(frozen=True, slots=True)
class UsageTotals:
    """Answers, tokens and cost over a day or a month."""

    answers: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cached_tokens: int = 0
    cost_nano: int = 0

    @property
    def tokens(self) -> int:
        """Input plus output tokens (reasoning is part of output)."""
        return self.input_tokens + self.output_tokens

    @property
    def cost_usd(self) -> float:
        """The cost in US dollars."""
        return self.cost_nano / NANO


@dataclass(frozen=True, slots=True)
class TopUser:
    """One member's usage of the day, for the ranking."""

    user: str
    today: UsageTotals


@dataclass(frozen=True, slots=True)
class UsageReport:
    """What `/usage` shows: today and this month, for the server and for one member."""

    server_today: UsageTotals
    server_month: UsageTotals
    user_today: UsageTotals
    user_month: UsageTotals
    limits: ServerLimits
    resets_at: int
    resets_in: float
    top: list[TopUser] = field(default_factory=list)


def utc_day(now: float) -> str:
    """The usage period of the UTC day of `now`, e.g. "d20250131"."""
    return datetime.fromtimestamp(now, UTC).strftime("d%Y%m%d")


def utc_month(now: float) -> str:
    """The usage period of the UTC month of `now`, e.g. "m202501"."""
    return datetime.fromtimestamp(now, UTC).strftime("m%Y%m")


def next_utc_midnight(now: float) -> int:
    """The epoch second at which the UTC day of `now` ends."""
    day = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return int((day + timedelta(days=1)).timestamp())


def _nano(usd: float) -> int:
    """Dollars as whole nano-dollars."""
    return round(usd * NANO)


def _totals(raw: dict[bytes | str, bytes | str]) -> UsageTotals:
    """A usage hash as totals; missing fields are zero."""
    values = {_text(k): int(_text(v)) for k, v in raw.items()}
    return UsageTotals(
        answers=values.get("answers", 0),
        input_tokens=values.get("input", 0),
        output_tokens=values.get("output", 0),
        reasoning_tokens=values.get("reasoning", 0),
        cached_tokens=values.get("cached", 0),
        cost_nano=values.get("cost_nano", 0),
    )


def _text(value: bytes | str) -> str:
    """A Redis reply as str, whatever decode_responses the client uses."""
    return value.decode() if isinstance(value, bytes) else value


class UsageLimits:
    """Checks and records answers against per-member rates and per-server daily budgets.

    `user_rate_per_minute`, `daily_tokens` and `daily_cost_usd` are the configured limits (0:
    none); a server's own overrides of the daily budgets win. Members with Manage Server are
    exempt from the per-member rate unless `limit_admins`; the server's budget binds everyone.
    """

    def __init__(
        self,
        redis: RedisClient,
        *,
        user_rate_per_minute: int,
        limit_admins: bool,
        daily_tokens: int,
        daily_cost_usd: float,
        clock: Clock = time.time,
    ) -> None:
        if user_rate_per_minute < 0 or daily_tokens < 0 or daily_cost_usd < 0:
            raise ValueError("Limits must be zero (none) or positive.")
        self._redis = redis
        self.user_rate_per_minute = user_rate_per_minute
        self.limit_admins = limit_admins
        self.daily_tokens = daily_tokens
        self.daily_cost_usd = daily_cost_usd
        self._clock = clock
        self._check_script = register_script(redis, _CHECK_LUA)
        self._record_script = register_script(redis, _RECORD_LUA)

    async def check(
        self,
        guild: str,
        user: str,
        *,
        is_admin: bool = False,
        places: Sequence[str] = (),
        roles: Sequence[str] = (),
    ) -> Verdict:
        """Whether `user` may get an answer in `guild` now; if so, it counts in their window.

        `places` are the channel and, in a thread, its parent (the server's allowed channels
        are checked against them; none skips that rule); `roles` are the member's role ids.
        Members with Manage Server (`is_admin`) pass the role rule, so an owner cannot lock
        themselves out.
        """
        now = self._clock()
        now_ms = int(now * 1000)
        server = ServerKey(guild)
        exempt = is_admin and not self.limit_admins
        rate = 0 if exempt else self.user_rate_per_minute
        args: list[int | str] = [
            now_ms,
            WINDOW_SECONDS * 1000,
            rate,
            self.daily_tokens,
            _nano(self.daily_cost_usd),
            f"{now_ms}-{secrets.token_hex(4)}",
            user,
            USAGE_TTL_SECONDS * 1000,
            1 if is_admin else 0,
            len(places),
            *places,
            *roles,
        ]
        keys = [
            server.rate(user),
            server.usage(utc_day(now)),
            server.limits,
            server.users,
            server.access_channels,
            server.access_roles,
        ]
        reply = await self._check_script(keys=keys, args=args)
        code = int(reply[0])
        if code == 0:
            return Allowed()
        if code == 4:
            return ChannelNotAllowed()
        if code == 5:
            return RoleNotAllowed()
        if code == 1:
            return TooFast(retry_after=int(reply[1]) / 1000, limit=int(reply[2]))
        resets_at = next_utc_midnight(now)
        what: Literal["tokens", "cost"] = "tokens" if code == 2 else "cost"
        return BudgetSpent(what=what, resets_at=resets_at, resets_in=resets_at - now)

    async def record(self, guild: str, user: str, usage: Usage) -> None:
        """Count one finished answer's tokens and cost for the server and the member."""
        now = self._clock()
        server = ServerKey(guild)
        day, month = utc_day(now), utc_month(now)
        keys = [
            server.usage(day),
            server.usage(day, user),
            server.usage(month),
            server.usage(month, user),
            server.top(day, "cost"),
            server.top(day, "tokens"),
            server.users,
        ]
        args: list[int | str] = [
            user,
            max(0, usage.input_tokens),
            max(0, usage.output_tokens),
            max(0, usage.reasoning_tokens),
            max(0, usage.cached_tokens),
            max(0, _nano(usage.cost or 0.0)),
            USAGE_TTL_SECONDS * 1000,
            int(now * 1000),
        ]
        await self._record_script(keys=keys, args=args)

    async def server_limits(self, guild: str) -> ServerLimits:
        """The daily budgets in force for a server, its own overrides applied."""
        raw = await self._redis.hmget(ServerKey(guild).limits, [TOKENS_FIELD, COST_FIELD])  # type: ignore[misc]
        tokens, cost = (_text(v) if v is not None else None for v in raw)
        return ServerLimits(
            daily_tokens=int(tokens) if tokens is not None else self.daily_tokens,
            daily_cost_usd=float(cost) if cost is not None else self.daily_cost_usd,
            tokens_overridden=tokens is not None,
            cost_overridden=cost is not None,
        )

    async def set_daily_tokens(self, guild: str, tokens: int | None) -> None:
        """Set the server's own daily token budget (0: none); None returns to the configured one."""
        await self._set_override(guild, TOKENS_FIELD, None if tokens is None else str(tokens))

    async def set_daily_cost(self, guild: str, usd: float | None) -> None:
        """Set the server's own daily cost budget in dollars (0: none); None: the configured one."""
        await self._set_override(guild, COST_FIELD, None if usd is None else repr(float(usd)))

    async def _set_override(self, guild: str, name: str, value: str | None) -> None:
        """Write or clear one override in the server's limits hash."""
        if value is not None and (not math.isfinite(float(value)) or float(value) < 0):
            raise ValueError("A budget must be zero (none) or a positive number.")
        key = ServerKey(guild).limits
        if value is None:
            await self._redis.hdel(key, name)  # type: ignore[misc]
        else:
            await self._redis.hset(key, name, value)  # type: ignore[misc]

    async def report(self, guild: str, user: str, *, top: int = 0, by: str = "cost") -> UsageReport:
        """Today's and this month's usage of the server and of `user`, and the day's top members."""
        if by not in ("cost", "tokens"):
            raise ValueError("The ranking is by cost or by tokens.")
        now = self._clock()
        server = ServerKey(guild)
        day, month = utc_day(now), utc_month(now)
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in (
                server.usage(day),
                server.usage(month),
                server.usage(day, user),
                server.usage(month, user),
            ):
                pipe.hgetall(key)
            pipe.zrevrange(server.top(day, by), 0, max(0, top) - 1)
            *hashes, ranked = await pipe.execute()
        leaders = await self._top_users(server, day, ranked if top > 0 else [])
        server_today, server_month, user_today, user_month = (_totals(h) for h in hashes)
        resets_at = next_utc_midnight(now)
        return UsageReport(
            server_today=server_today,
            server_month=server_month,
            user_today=user_today,
            user_month=user_month,
            limits=await self.server_limits(guild),
            resets_at=resets_at,
            resets_in=resets_at - now,
            top=leaders,
        )

    async def _top_users(
        self, server: ServerKey, day: str, ranked: Sequence[bytes | str]
    ) -> list[TopUser]:
        """The day's usage of each ranked member, in ranking order."""
        if not ranked:
            return []
        users = [_text(member) for member in ranked]
        async with self._redis.pipeline(transaction=False) as pipe:
            for user in users:
                pipe.hgetall(server.usage(day, user))
            hashes = await pipe.execute()
        return [TopUser(user, _totals(h)) for user, h in zip(users, hashes, strict=True)]


def duration_text(seconds: float) -> str:
    """A short duration such as "23 s", "4 min" or "3 h 20 min", rounded up."""
    whole = max(1, math.ceil(seconds))
    if whole < 60:
        return f"{whole} s"
    minutes = math.ceil(whole / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, rest = divmod(minutes, 60)
    return f"{hours} h {rest} min" if rest else f"{hours} h"


def utc_reset_text(resets_at: int, resets_in: float) -> str:
    """When a budget resets, for a platform without timestamps: "at 00:00 UTC (in 3 h 20 min)"."""
    del resets_at  # always a UTC midnight
    return f"at 00:00 UTC (in {duration_text(resets_in)})"


def refusal_text(
    verdict: Refusal,
    *,
    reset_text: Callable[[int, float], str] = utc_reset_text,
) -> str:
    """The one-line reply for a refused answer; `reset_text(resets_at, resets_in)` says when.

    Discord passes `lambda at, _: f"<t:{at}:R>"` so each reader sees it in their own time.
    """
    if isinstance(verdict, ChannelNotAllowed):
        return "This server has the assistant answer in other channels only (see /settings)."
    if isinstance(verdict, RoleNotAllowed):
        return "This server lets members with certain roles use the assistant (see /settings)."
    if isinstance(verdict, TooFast):
        per_minute = "answer" if verdict.limit == 1 else "answers"
        return (
            f"You have had {verdict.limit} {per_minute} in the last minute, the most allowed. "
            f"You can ask again in {duration_text(verdict.retry_after)}."
        )
    what = "token" if verdict.what == "tokens" else "cost"
    return (
        f"This server's daily {what} budget for the assistant is used up. "
        f"It resets {reset_text(verdict.resets_at, verdict.resets_in)}."
    )


def totals_text(totals: UsageTotals) -> str:
    """One line of usage: answers, tokens (cached, reasoning) and cost."""
    answers = "answer" if totals.answers == 1 else "answers"
    return (
        f"{totals.answers} {answers}, {totals.tokens:,} tokens "
        f"({totals.input_tokens:,} in, {totals.cached_tokens:,} of them cached; "
        f"{totals.output_tokens:,} out, {totals.reasoning_tokens:,} of them reasoning), "
        f"${totals.cost_usd:.4f}"
    )


def report_text(
    report: UsageReport,
    *,
    name_of: Callable[[str], str] = str,
    reset_text: Callable[[int, float], str] = utc_reset_text,
) -> str:
    """The `/usage` reply: server and member, today and this month, budgets, top members.

    `name_of` turns a member id into how to show them (Discord: a mention that pings nobody).
    """
    limits = report.limits
    budgets = []
    if limits.daily_tokens:
        budgets.append(f"{limits.daily_tokens:,} tokens")
    if limits.daily_cost_usd:
        budgets.append(f"${limits.daily_cost_usd:.2f}")
    resets = reset_text(report.resets_at, report.resets_in)
    lines = [
        f"**This server** today: {totals_text(report.server_today)}.",
        f"**This server** this month: {totals_text(report.server_month)}.",
        f"**You** today: {totals_text(report.user_today)}.",
        f"**You** this month: {totals_text(report.user_month)}.",
        f"Daily budget: {' and '.join(budgets)}, resetting {resets}."
        if budgets
        else "Daily budget: none.",
    ]
    if report.top:
        lines.append("**Top members today:**")
        lines += [
            f"{rank}. {name_of(leader.user)}: {totals_text(leader.today)}"
            for rank, leader in enumerate(report.top, start=1)
        ]
    return "\n".join(lines)
