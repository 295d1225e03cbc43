"""Guard-rail commands: /usage (anyone, private), /limits and /access (Manage Server to change)
and /forget (anyone, for themselves). Every reply here is private."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands

from bot.core.access import AccessError, RuleName
from bot.core.limits import report_text
from bot.core.privacy import Forgotten
from bot.core.renderer import DEFAULT_LIMIT
from bot.frontend.commands.common import (
    CommandCog,
    Interaction,
    clip,
    guild_only,
    is_clear,
    may_change,
)
from bot.frontend.commands.settings import access_text, budget_text
from bot.frontend.gate import discord_time
from bot.frontend.sinks import NO_PINGS

if TYPE_CHECKING:
    from bot.frontend.client import AssistantBot

Action = Literal["add", "remove", "clear"]
TOP_MEMBERS = 5


def parse_tokens(raw: str) -> int | None:
    """A daily token budget: a whole number (0: none), or 'default' (None); ValueError else."""
    if is_clear(raw):
        return None
    value = raw.strip().replace(",", "").replace("_", "")
    if not value.isdigit():
        raise ValueError("The token budget is a whole number (0 for none) or 'default'.")
    return int(value)


def parse_cost(raw: str) -> float | None:
    """A daily cost budget in dollars (0: none), or 'default' (None); ValueError else."""
    if is_clear(raw):
        return None
    try:
        value = float(raw.strip().removeprefix("$"))
    except ValueError:
        value = -1.0
    if not math.isfinite(value) or value < 0:
        raise ValueError("The cost budget is an amount in dollars (0 for none) or 'default'.")
    return value


def forgotten_text(forgotten: Forgotten, facts: int = 0) -> str:
    """The private confirmation of /forget, with counts (server-memory facts too)."""
    told = f" and {facts} {'fact' if facts == 1 else 'facts'} you told me" if facts else ""
    removed = forgotten.removed
    if not removed.total:
        if facts:
            return f"Forgotten: {facts} {'fact' if facts == 1 else 'facts'} you told me."
        return "I had nothing of yours in this server's conversations."
    messages = "message" if removed.user_items == 1 else "messages"
    answers = "answer" if removed.answers == 1 else "answers"
    places = "conversation" if forgotten.conversations == 1 else "conversations"
    return (
        f"Forgotten: {removed.user_items} of your {messages} and {removed.answers} {answers} "
        f"to them, in {forgotten.conversations} {places}{told}. The assistant no longer sees "
        "them."
    )


class GuardCommands(CommandCog):
    """Usage, budgets, who may use the assistant where, and forgetting oneself."""

    access = app_commands.Group(
        name="access", description="Where and by whom the assistant may be used (Manage Server)"
    )

    def __init__(self, bot: AssistantBot) -> None:
        self.bot = bot

    @app_commands.command(name="usage", description="Answers, tokens and cost today and this month")
    async def usage(self, interaction: Interaction) -> None:
        """The server's and the caller's usage; Manage Server also sees the day's top members."""
        if await guild_only(interaction) is None:
            return
        admin = interaction.permissions.manage_guild
        report = await self.bot.limits.report(
            str(interaction.guild_id),
            str(interaction.user.id),
            top=TOP_MEMBERS if admin else 0,
            by="cost",
        )
        text = report_text(report, name_of=lambda user: f"<@{user}>", reset_text=discord_time)
        await interaction.response.send_message(
            clip(text, DEFAULT_LIMIT), ephemeral=True, allowed_mentions=NO_PINGS
        )

    @app_commands.command(name="limits", description="Show or set this server's daily budget")
    @app_commands.describe(
        tokens="Tokens a day for the whole server (0: no limit, 'default': the configured one)",
        cost="US dollars a day for the whole server (0: no limit, 'default': the configured one)",
    )
    async def limits(
        self, interaction: Interaction, tokens: str | None = None, cost: str | None = None
    ) -> None:
        """Show the daily budgets in force, or set this server's own."""
        if await guild_only(interaction) is None:
            return
        guild = str(interaction.guild_id)
        if tokens is None and cost is None:
            limits = await self.bot.limits.server_limits(guild)
            await interaction.response.send_message(
                f"Daily budget: {budget_text(limits)}.", ephemeral=True
            )
            return
        if not await may_change(interaction, "daily budget"):
            return
        try:
            new_tokens = parse_tokens(tokens) if tokens is not None else None
            new_cost = parse_cost(cost) if cost is not None else None
        except ValueError as exc:
            await interaction.response.send_message(str(exc), ephemeral=True)
            return
        if tokens is not None:
            await self.bot.limits.set_daily_tokens(guild, new_tokens)
        if cost is not None:
            await self.bot.limits.set_daily_cost(guild, new_cost)
        limits = await self.bot.limits.server_limits(guild)
        await interaction.response.send_message(
            f"Daily budget now: {budget_text(limits)}.", ephemeral=True
        )

    @access.command(name="channel", description="Channels where the assistant answers mentions")
    @app_commands.describe(action="add, remove, or clear (answer everywhere)", channel="A channel")
    async def access_channel(
        self,
        interaction: Interaction,
        action: Action,
        channel: discord.TextChannel | None = None,
    ) -> None:
        """Allow the assistant in one more channel, take one off, or allow every channel."""
        await self._change(interaction, "channels", action, channel.id if channel else None)

    @access.command(name="role", description="Roles whose members may use the assistant")
    @app_commands.describe(action="add, remove, or clear (everyone)", role="A role")
    async def access_role(
        self, interaction: Interaction, action: Action, role: discord.Role | None = None
    ) -> None:
        """Allow one more role, take one off, or let everyone use the assistant again."""
        await self._change(interaction, "roles", action, role.id if role else None)

    async def _change(
        self, interaction: Interaction, rule: RuleName, action: Action, entry: int | None
    ) -> None:
        """Apply one change to a rule and say what is in force now."""
        if await guild_only(interaction) is None:
            return
        if not await may_change(interaction, "access rules"):
            return
        guild = str(interaction.guild_id)
        what = "channel" if rule == "channels" else "role"
        rules = self.bot.access
        if action == "clear":
            await rules.clear(guild, rule)
        elif entry is None:
            await interaction.response.send_message(f"Name the {what} to {action}.", ephemeral=True)
            return
        elif action == "add":
            try:
                await rules.add(guild, rule, str(entry))
            except AccessError as exc:
                await interaction.response.send_message(str(exc), ephemeral=True)
                return
        else:
            await rules.remove(guild, rule, str(entry))
        access = await rules.read(guild)
        await interaction.response.send_message(
            access_text(access.channels, access.roles), ephemeral=True, allowed_mentions=NO_PINGS
        )

    @app_commands.command(
        name="forget", description="Remove your messages from this server's conversations"
    )
    async def forget(self, interaction: Interaction) -> None:
        """Remove the caller's messages (and the answers to them) from every conversation of the
        server; a private confirmation with counts."""
        if await guild_only(interaction) is None:
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        guild, user = str(interaction.guild_id), str(interaction.user.id)
        forgotten = await self.bot.data.forget_member(guild, user)
        facts = await self.bot.memory.store.forget_teller(guild, user)
        await interaction.followup.send(forgotten_text(forgotten, facts), ephemeral=True)
