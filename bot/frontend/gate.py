"""Before an answer: may this member have one here and now? Access rules, the server's daily
budget and the member's rate, in one Redis script (`UsageLimits.check`).

A refused slash command gets its reason privately; a refused mention gets a short quiet reply
when the member is over a limit, and nothing at all when the channel or their roles are not
allowed (no noise in channels the owner closed).
"""

from __future__ import annotations

import logging

import discord
from redis.exceptions import RedisError

from bot.core.keys import DM_GUILD
from bot.core.limits import (
    Allowed,
    ChannelNotAllowed,
    Refusal,
    RoleNotAllowed,
    UsageLimits,
    refusal_text,
)

log = logging.getLogger(__name__)

Place = discord.abc.GuildChannel | discord.Thread | discord.DMChannel | discord.abc.Messageable


def discord_time(resets_at: int, _resets_in: float) -> str:
    """A reset time as Discord's relative timestamp, shown in each reader's own time."""
    return f"<t:{resets_at}:R>"


def refusal_line(verdict: Refusal) -> str:
    """The one line a refused member is told."""
    return refusal_text(verdict, reset_text=discord_time)


def silent_for_mentions(verdict: Refusal) -> bool:
    """Whether a mention refused so gets no reply at all (channel or role not allowed)."""
    return isinstance(verdict, ChannelNotAllowed | RoleNotAllowed)


def guild_of(channel: object) -> str:
    """The id the limits and rules of a channel's server are kept under ("dm" for DMs)."""
    guild = getattr(channel, "guild", None)
    return str(guild.id) if guild is not None else DM_GUILD


def places_of(channel: object) -> list[str]:
    """The channel's id, and its parent's for a thread; none in DMs (no channel rule there)."""
    if isinstance(channel, discord.Thread):
        return [str(channel.id), str(channel.parent_id)]
    if isinstance(channel, discord.abc.GuildChannel):
        return [str(channel.id)]
    return []


class Gate:
    """Asks the limits whether a member may have an answer, from what Discord says of them."""

    def __init__(self, limits: UsageLimits) -> None:
        self._limits = limits

    async def admit(
        self, user: discord.abc.User, channel: object, *, is_admin: bool | None = None
    ) -> Refusal | None:
        """None when the answer may go ahead (and it counts in the member's rate), else why not.

        `is_admin` defaults to the member's Manage Server permission. If Redis cannot be asked,
        the answer goes ahead: it then fails with the store's own notice, never silently.
        """
        roles: list[str] = []
        admin = False
        if isinstance(user, discord.Member):
            roles = [str(role.id) for role in user.roles]
            admin = user.guild_permissions.manage_guild
        if is_admin is not None:
            admin = is_admin
        try:
            verdict = await self._limits.check(
                guild_of(channel),
                str(user.id),
                is_admin=admin,
                places=places_of(channel),
                roles=roles,
            )
        except RedisError as exc:
            log.warning("Could not check the limits for %s: %s", user.id, exc)
            return None
        return None if isinstance(verdict, Allowed) else verdict
