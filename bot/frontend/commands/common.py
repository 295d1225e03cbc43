"""What every slash-command cog shares: the conversation of an interaction, the "servers only"
refusal, and one sentence for any unexpected failure."""

from __future__ import annotations

import logging
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.core.keys import ConversationKey

log = logging.getLogger(__name__)

Interaction = discord.Interaction[Any]
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
