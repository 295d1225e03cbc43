"""Answer choice commands: /reasoning, /web, /fallbacks and /footer. Like /model, each shows
the choice in force with no value, and sets it (Manage Server) for this channel or the whole
server; `default` clears it. One helper shows and sets any choice of the CHOICES registry, so
each command only names its choice (and, for /fallbacks, checks the models)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Literal

from discord import app_commands

from bot.core.options import MODEL_DEFAULT_EFFORT, OptionError, model_list
from bot.core.prefs import CHOICES, PrefName, Scope, parse_choice
from bot.frontend.commands.common import (
    MODEL_SHOWN_CHARS,
    CommandCog,
    Interaction,
    ScopeChoice,
    clip,
    guild_only,
    is_clear,
    may_change,
    tell,
    where,
)

if TYPE_CHECKING:
    from bot.frontend.client import AssistantBot

Switch = Literal["on", "off", "default"]
Check = Callable[[str], Awaitable[str | None]]
"""Looks at a parsed value before it is stored: None, or the sentence that refuses it."""
EFFORT_HINTS = {
    MODEL_DEFAULT_EFFORT: "the model's own default",
    "none": "no reasoning",
    "minimal": "the least reasoning",
    "low": "a little reasoning",
    "medium": "some reasoning",
    "high": "the most reasoning (slowest)",
    "default": "clear this setting",
}
SCOPE_DESCRIPTION = "Set it for this channel (default) or the whole server"


def shown(name: PrefName, stored: str) -> str:
    """A stored choice as people read it: `low`, `auto` (the model's own), on, or a model list."""
    if name == "reasoning":
        hint = " (the model's own)" if stored == MODEL_DEFAULT_EFFORT else ""
        return f"`{stored}`{hint}"
    if name == "fallbacks":
        names = ", ".join(f"`{model}`" for model in model_list(stored))
        return clip(names, 2 * MODEL_SHOWN_CHARS) if names else "none"
    if name == "model":
        return f"`{clip(stored, MODEL_SHOWN_CHARS)}`"
    return stored


class ChoiceCommands(CommandCog):
    """Reasoning effort, web search, fallback models and the usage footer."""

    def __init__(self, bot: AssistantBot) -> None:
        self.bot = bot

    async def _show_or_set(
        self,
        interaction: Interaction,
        name: PrefName,
        value: str | None,
        scope: Scope,
        check: Check | None = None,
    ) -> None:
        """Show a choice in force (anyone), or set or clear it (Manage Server); a value the
        choice does not take is one ephemeral sentence and nothing is stored."""
        key = await guild_only(interaction)
        if key is None:
            return
        label = CHOICES[name].label
        if value is None:
            eff = (await self.bot.prefs.effective(key))[name]
            await interaction.response.send_message(
                f"The {label} here is {shown(name, eff.value)} (from the {eff.source} setting).",
                ephemeral=True,
            )
            return
        if not await may_change(interaction, label):
            return
        if is_clear(value):
            await self.bot.prefs.set(key, scope, name, "")
            await interaction.response.send_message(
                f"Set the {label} for {where(scope)} back to the default."
            )
            return
        try:
            stored = parse_choice(name, value, scope)
            refusal = await check(stored) if check is not None else None
            if refusal is None:
                stored = await self.bot.prefs.set(key, scope, name, stored)
        except OptionError as exc:
            refusal = str(exc)
        if refusal is not None:
            await tell(interaction, refusal)
            return
        await interaction.response.send_message(
            f"Set the {label} for {where(scope)} to {shown(name, stored)}."
        )

    @app_commands.command(name="reasoning", description="Show or set how hard the model thinks")
    @app_commands.describe(
        effort="auto, none, minimal, low, medium or high ('default' to clear)",
        scope=SCOPE_DESCRIPTION,
    )
    async def reasoning(
        self, interaction: Interaction, effort: str | None = None, scope: ScopeChoice = "channel"
    ) -> None:
        """Show the reasoning effort in force, or set it."""
        await self._show_or_set(interaction, "reasoning", effort, scope)

    @reasoning.autocomplete("effort")
    async def _efforts(
        self, interaction: Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        """The efforts (and `default`) that start with what was typed."""
        typed = current.strip().lower()
        return [
            app_commands.Choice(name=f"{effort}: {hint}", value=effort)
            for effort, hint in EFFORT_HINTS.items()
            if effort.startswith(typed)
        ]

    @app_commands.command(name="web", description="Show or set web search with sources")
    @app_commands.describe(
        search="on: answers search the web and list their sources ('default' to clear)",
        scope=SCOPE_DESCRIPTION,
    )
    async def web(
        self, interaction: Interaction, search: Switch | None = None, scope: ScopeChoice = "channel"
    ) -> None:
        """Show whether answers here search the web, or set it."""
        await self._show_or_set(interaction, "web", search, scope)

    @app_commands.command(
        name="fallbacks", description="Show or set models to try when the model is unavailable"
    )
    @app_commands.describe(
        models="Comma-separated model ids, 'none' for none ('default' to clear)",
        scope=SCOPE_DESCRIPTION,
    )
    async def fallbacks(
        self, interaction: Interaction, models: str | None = None, scope: ScopeChoice = "channel"
    ) -> None:
        """Show the fallback models in force, or set them (each checked like /model's)."""
        await self._show_or_set(interaction, "fallbacks", models, scope, self._unknown_model)

    async def _unknown_model(self, stored: str) -> str | None:
        """The sentence naming the first model OpenRouter does not offer, if any."""
        for model in model_list(stored):
            known, close = await self.bot.catalog.check(model)
            if not known:
                hint = f" Did you mean {', '.join(f'`{c}`' for c in close)}?" if close else ""
                return f"OpenRouter has no model `{model}`.{hint}"
        return None

    @fallbacks.autocomplete("models")
    async def _fallback_names(
        self, interaction: Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        """Model ids completing the last one typed (after the commas), and `none`."""
        head, _, last = current.rpartition(",")
        prefix = f"{head.rstrip()}, " if head.strip() else ""
        names = [prefix + name for name in await self.bot.catalog.matching(last)]
        if not prefix and "none".startswith(last.strip().lower()):
            names.insert(0, "none")
        return [app_commands.Choice(name=n, value=n) for n in names if len(n) <= 100][:25]

    @app_commands.command(
        name="footer", description="Show or set the usage line under answers (whole server)"
    )
    @app_commands.describe(show="on: tokens and cost under every answer ('default' to clear)")
    async def footer(self, interaction: Interaction, show: Switch | None = None) -> None:
        """Show whether answers in this server end with their usage, or set it."""
        await self._show_or_set(interaction, "footer", show, "server")
