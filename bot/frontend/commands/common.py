"""What every slash-command cog shares: the conversation of an interaction, the "servers only"
refusal, the Manage Server check and the words that clear a choice, and one sentence for any
unexpected failure."""

from __future__ import annotations

import logging
from typing import Any, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.core.keys import ConversationKey

log = logging.getLogger(__name__)

Interaction = discord.Interaction[Any]
ScopeChoice = Literal["channel", "server"]
CLEAR_WORDS = {"default", "reset", "clear"}
MODEL_SHOWN_CHARS = 200
BUSY = "I'm busy with earlier messages in this channel; try again in a moment."
FAILED = "Something went wrong on my side; please try again."


def conversation_of(interaction: Interaction) -> ConversationKey | None:
    """The conversation of the channel or thread the command was used in."""
    channel = interaction.channel
    if interaction.guild_id is None or channel is None:
        return None
    return ConversationKey(str(interaction.guild_id), str(channel.id))


async def guild_only(interaction: Interaction) -> ConversationKey | None:
    """The conversation key, or an ephemeral refusal outside a server."""
    key = conversation_of(interaction)
    if key is None:
        await interaction.response.send_message("I work in servers only.", ephemeral=True)
    return key


async def tell(interaction: Interaction, text: str) -> None:
    """One ephemeral sentence, whether or not the interaction was answered already."""
    if interaction.response.is_done():
        await interaction.followup.send(text, ephemeral=True)
    else:
        await interaction.response.send_message(text, ephemeral=True)


def clip(text: str, limit: int) -> str:
    """The text, cut to at most `limit` characters with an ellipsis when it was longer."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def is_clear(value: str) -> bool:
    """Whether a new value asks for the default back."""
    return value.strip().lower() in CLEAR_WORDS


def where(scope: ScopeChoice) -> str:
    """The scope as a sentence names it."""
    return "this channel" if scope == "channel" else "this server"


async def may_change(interaction: Interaction, label: str) -> bool:
    """Whether the user may change a choice (Manage Server); if not, they are told so."""
    if interaction.permissions.manage_guild:
        return True
    await interaction.response.send_message(
        f"Changing the {label} needs the Manage Server permission.", ephemeral=True
    )
    return False


class CommandCog(commands.Cog):
    """A cog of slash commands: an unexpected failure is one sentence, details in the log."""

    async def cog_app_command_error(
        self, interaction: Interaction, error: app_commands.AppCommandError
    ) -> None:
        """Any unexpected failure: one sentence to the user, the details in the log."""
        log.error(
            "Command /%s failed",
            interaction.command.name if interaction.command else "?",
            exc_info=error,
        )
        try:
            await tell(interaction, FAILED)
        except discord.HTTPException:
            log.warning("Could not tell the user about the failure.")
