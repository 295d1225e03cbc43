"""Settings commands: /model, /system and /settings. Anyone may look; changing needs Manage
Server. Each command shows or sets its own choice; they share the permission check and the
words that clear a choice (in common.py) with the answer choices of choices.py."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bot.core.keys import ConversationKey
from bot.core.limits import ServerLimits
from bot.core.prefs import CHOICES, PrefName
from bot.core.renderer import DEFAULT_LIMIT
from bot.frontend.commands.choices import shown
from bot.frontend.commands.common import (
    MODEL_SHOWN_CHARS,
    CommandCog,
    Interaction,
    ScopeChoice,
    clip,
    guild_only,
    is_clear,
    may_change,
    where,
)
from bot.frontend.sinks import NO_PINGS

if TYPE_CHECKING:
    from bot.frontend.client import AssistantBot

SYSTEM_PROMPT_FILE = "system-prompt.txt"
SYSTEM_SHOWN_CHARS = 300
ANSWER_CHOICES: tuple[PrefName, ...] = ("reasoning", "web", "fallbacks", "footer")


def budget_text(limits: ServerLimits) -> str:
    """The daily budgets in force, and whether each is this server's own or the configured one."""
    tokens = f"{limits.daily_tokens:,} tokens" if limits.daily_tokens else "no token limit"
    cost = f"${limits.daily_cost_usd:.2f}" if limits.daily_cost_usd else "no cost limit"
    tokens_from = "this server" if limits.tokens_overridden else "default"
    cost_from = "this server" if limits.cost_overridden else "default"
    return f"{tokens} ({tokens_from}), {cost} ({cost_from}) a day (UTC)"


def access_text(channels: tuple[str, ...], roles: tuple[str, ...]) -> str:
    """Who may use the assistant where, as /settings and /access show it (mentions render as
    names and ping nobody)."""
    places = ", ".join(f"<#{c}>" for c in channels) if channels else "every channel it can post in"
    who = ", ".join(f"<@&{r}>" for r in roles) if roles else "everyone"
    tail = " (and Manage Server)" if roles else ""
    return f"**Access**: answers in {places}; usable by {who}{tail}."


def rate_text(per_minute: int, *, limit_admins: bool) -> str:
    """The per-member rate as /settings shows it."""
    if not per_minute:
        return "no per-member limit (default)"
    who = "everyone" if limit_admins else "each member (Manage Server exempt)"
    return f"{per_minute} answers a minute for {who} (default)"


async def memory_line(bot: AssistantBot, guild: str) -> str:
    """Whether the server memory is on here, and what decides it."""
    if not bot.memory.enabled:
        return "**Server memory**: off (MEMORY_ENABLED, the bot's configuration)"
    if await bot.memory.store.enabled(guild):
        return "**Server memory**: on (server switch, `/memory switch`)"
    return "**Server memory**: off (server switch, `/memory switch`; off by default)"


class SettingsCommands(CommandCog):
    """The model and system prompt in force, and what else is in force here."""

    def __init__(self, bot: AssistantBot) -> None:
        self.bot = bot

    @app_commands.command(name="model", description="Show or set the model")
    @app_commands.describe(
        name="Model id, e.g. openai/gpt-4o-mini ('default' to clear)",
        scope="Set it for this channel (default) or the whole server",
    )
    async def model(
        self, interaction: Interaction, name: str | None = None, scope: ScopeChoice = "channel"
    ) -> None:
        """Show the model in force, or set it."""
        key = await guild_only(interaction)
        if key is None:
            return
        if name is None:
            eff = (await self.bot.prefs.effective(key))["model"]
            await interaction.response.send_message(
                f"The model here is `{clip(eff.value, MODEL_SHOWN_CHARS)}` "
                f"(from the {eff.source} setting).",
                ephemeral=True,
            )
            return
        if not await may_change(interaction, "model"):
            return
        if is_clear(name):
            await self.bot.prefs.set(key, scope, "model", "")
            await interaction.response.send_message(
                f"Set the model for {where(scope)} back to the default."
            )
            return
        model = name.strip()
        known, close = await self.bot.catalog.check(model)
        if not known:
            hint = f" Did you mean {', '.join(f'`{c}`' for c in close)}?" if close else ""
            await interaction.response.send_message(
                f"OpenRouter has no model `{model}`.{hint}", ephemeral=True
            )
            return
        await self.bot.prefs.set(key, scope, "model", model)
        await interaction.response.send_message(f"Set the model for {where(scope)} to `{model}`.")

    @model.autocomplete("name")
    async def _model_names(
        self, interaction: Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        """Model ids from OpenRouter's list that contain what was typed."""
        names = await self.bot.catalog.matching(current)
        return [app_commands.Choice(name=n[:100], value=n[:100]) for n in names]

    @app_commands.command(name="system", description="Show or set the system prompt")
    @app_commands.describe(
        prompt="Instructions for the model ('default' to clear)",
        scope="Set it for this channel (default) or the whole server",
    )
    async def system(
        self,
        interaction: Interaction,
        prompt: app_commands.Range[str, 1, 4000] | None = None,
        scope: ScopeChoice = "channel",
    ) -> None:
        """Show the system prompt in force, or set it."""
        key = await guild_only(interaction)
        if key is None:
            return
        if prompt is None:
            await self._show_system(interaction, key)
            return
        if not await may_change(interaction, "system prompt"):
            return
        clear = is_clear(prompt)
        await self.bot.prefs.set(key, scope, "system", "" if clear else prompt.strip())
        what = " back to the default" if clear else ""
        await interaction.response.send_message(f"Set the system prompt for {where(scope)}{what}.")

    async def _show_system(self, interaction: Interaction, key: ConversationKey) -> None:
        """The system prompt in force: in the message, or as a file when it would not fit."""
        eff = (await self.bot.prefs.effective(key))["system"]
        head = f"The system prompt here (from the {eff.source} setting)"
        text = f"{head}:\n>>> {eff.value}"
        if len(text) <= DEFAULT_LIMIT:
            await interaction.response.send_message(text, ephemeral=True)
            return
        prompt = discord.File(io.BytesIO(eff.value.encode()), filename=SYSTEM_PROMPT_FILE)
        await interaction.response.send_message(
            f"{head} is {len(eff.value):,} characters long; here it is as a file.",
            file=prompt,
            ephemeral=True,
        )

    @app_commands.command(
        name="settings", description="What is in force here and where it comes from"
    )
    async def settings(self, interaction: Interaction) -> None:
        """Every choice in force (model, system prompt, reasoning, web search, fallbacks, usage
        footer) with where it comes from, then the history size, the limits, the daily budget
        and the access rules."""
        key = await guild_only(interaction)
        if key is None:
            return
        eff = await self.bot.prefs.effective(key)
        items = await self.bot.core.store.load(key)
        budget = await self.bot.limits.server_limits(key.guild)
        access = await self.bot.access.read(key.guild)
        s = self.bot.settings
        system = clip(eff["system"].value, SYSTEM_SHOWN_CHARS)
        lines = [
            f"**Model**: `{clip(eff['model'].value, MODEL_SHOWN_CHARS)}` ({eff['model'].source})",
            f"**System prompt** ({eff['system'].source}): {system}",
            *(
                f"**{CHOICES[name].label.capitalize()}**: {shown(name, eff[name].value)} "
                f"({eff[name].source})"
                for name in ANSWER_CHOICES
            ),
            f"**History**: {len(items)} of at most {s.history_max_messages} items "
            f"({sum(len(i.text) for i in items):,} of {s.history_max_chars:,} characters), "
            f"forgotten after {s.history_ttl_seconds // 3600} h idle (default)",
            f"**Limits**: questions up to {s.max_input_chars:,} characters, answers up to "
            f"{s.max_output_tokens:,} tokens (default)",
            await memory_line(self.bot, key.guild),
            f"**Daily budget**: {budget_text(budget)}",
            f"**Rate**: {rate_text(s.user_rate_per_minute, limit_admins=s.limit_admins)}",
            access_text(access.channels, access.roles),
        ]
        await interaction.response.send_message(
            clip("\n".join(lines), DEFAULT_LIMIT), ephemeral=True, allowed_mentions=NO_PINGS
        )
