"""Stop and Regenerate buttons. Their state lives in the custom_id (dynamic items), so they keep
working after a restart. What a press does comes from the client's `button_actions` (a small
protocol), so the buttons know nothing else of the bot."""

from __future__ import annotations

import logging
import re
from typing import Any, Protocol, cast

import discord
from discord.ext import commands

from bot.core.control import RegenerateOutcome, RunningRecord, StopOutcome
from bot.core.keys import DM_GUILD, ConversationKey
from bot.core.tools.context import ToolContext
from bot.frontend.places import interaction_context

log = logging.getLogger(__name__)

NOTHING_TO_REGENERATE = (
    "There is no answer here to regenerate: the conversation was reset or has expired."
)
UNREACHABLE = "I could not reach the process running this channel; try again in a moment."


class ButtonActions(Protocol):
    """What the buttons ask of the bot."""

    async def find(self, key: ConversationKey) -> RunningRecord | None:
        """Which process streams an answer in a conversation, and for whom; None: nobody."""

    async def stop(self, key: ConversationKey) -> StopOutcome:
        """Stop the answer streaming in a conversation, in whichever process runs it."""

    async def latest_answer(self, key: ConversationKey) -> list[str] | None:
        """The message ids of the conversation's latest answer, if known."""

    async def regenerate(
        self,
        key: ConversationKey,
        asker_id: int,
        message_ids: list[str],
        context: ToolContext | None = None,
    ) -> RegenerateOutcome:
        """Queue answering the last question again into these messages, where it belongs (with
        the tools of `context`, the place and the presser, when that is this process)."""

    async def refusal(self, interaction: discord.Interaction[Any]) -> str | None:
        """Why the presser may not have a new answer now (limits, access), or None."""


class ButtonHost(Protocol):
    """A client that carries the buttons' actions."""

    button_actions: ButtonActions


def _actions(interaction: discord.Interaction[Any]) -> ButtonActions:
    """The actions of the client that received the press."""
    return cast(ButtonHost, interaction.client).button_actions


def may_control(interaction: discord.Interaction[Any], asker_id: int) -> bool:
    """The asker, or anyone who may manage messages in this channel."""
    return interaction.user.id == asker_id or interaction.permissions.manage_messages


def _key_of(interaction: discord.Interaction[Any], channel_id: int) -> ConversationKey | None:
    """The conversation a button belongs to (its channel in the interaction's server, or a
    direct message channel)."""
    if interaction.guild_id is None:
        return ConversationKey(DM_GUILD, str(channel_id))
    return ConversationKey(str(interaction.guild_id), str(channel_id))


class StopButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"llm:stop:(?P<channel>\d+):(?P<asker>\d+)",
):
    """Stops the answer streaming in the channel; the text so far stays."""

    def __init__(self, channel_id: int, asker_id: int) -> None:
        super().__init__(
            discord.ui.Button(
                label="Stop",
                style=discord.ButtonStyle.secondary,
                emoji="⏹️",
                custom_id=f"llm:stop:{channel_id}:{asker_id}",
            )
        )
        self.channel_id = channel_id
        self.asker_id = asker_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str]
    ) -> StopButton:
        """Rebuild the button from its custom_id."""
        return cls(int(match["channel"]), int(match["asker"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        """Stop the answer, if the presser may."""
        if not may_control(interaction, self.asker_id):
            await interaction.response.send_message(
                "Only the person who asked (or a moderator) can stop this answer.", ephemeral=True
            )
            return
        key = _key_of(interaction, self.channel_id)
        outcome = await _actions(interaction).stop(key) if key else "finished"
        if outcome != "stopped":
            text = "That answer has already finished." if outcome == "finished" else UNREACHABLE
            await interaction.response.send_message(text, ephemeral=True)
            return
        await interaction.response.defer()


class RegenerateButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"llm:regen:(?P<channel>\d+):(?P<asker>\d+)",
):
    """Asks the model again for the channel's last answer, replacing it."""

    def __init__(self, channel_id: int, asker_id: int) -> None:
        super().__init__(
            discord.ui.Button(
                label="Regenerate",
                style=discord.ButtonStyle.secondary,
                emoji="🔄",
                custom_id=f"llm:regen:{channel_id}:{asker_id}",
            )
        )
        self.channel_id = channel_id
        self.asker_id = asker_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str]
    ) -> RegenerateButton:
        """Rebuild the button from its custom_id."""
        return cls(int(match["channel"]), int(match["asker"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        """Regenerate the last answer, if the presser may and it is still the last one."""
        if not may_control(interaction, self.asker_id):
            await interaction.response.send_message(
                "Only the person who asked (or a moderator) can regenerate this answer.",
                ephemeral=True,
            )
            return
        actions = _actions(interaction)
        key = _key_of(interaction, self.channel_id)
        message = interaction.message
        last = await actions.latest_answer(key) if key else None
        if key is not None and message is not None and last is None:
            await interaction.response.send_message(NOTHING_TO_REGENERATE, ephemeral=True)
            return
        if key is None or message is None or last is None or str(message.id) not in last:
            await interaction.response.send_message(
                "Only the latest answer in this channel can be regenerated.", ephemeral=True
            )
            return
        refused = await actions.refusal(interaction)
        if refused is not None:
            await interaction.response.send_message(refused, ephemeral=True)
            return
        await interaction.response.defer()
        context = interaction_context(interaction)
        outcome = await actions.regenerate(key, self.asker_id, last, context)
        if outcome != "queued":
            text = (
                "I'm busy in this channel; try again in a moment."
                if outcome == "busy"
                else UNREACHABLE
            )
            await interaction.followup.send(text, ephemeral=True)


def answer_view(key: ConversationKey, asker_id: int, *, streaming: bool) -> discord.ui.View:
    """The buttons on an answer: Stop while it streams, Regenerate once it is done."""
    view = discord.ui.View(timeout=None)
    channel_id = int(key.channel)
    if streaming:
        view.add_item(StopButton(channel_id, asker_id))
    else:
        view.add_item(RegenerateButton(channel_id, asker_id))
    return view


async def setup(bot: commands.Bot) -> None:
    """Register the buttons so presses are handled even after a restart."""
    bot.add_dynamic_items(StopButton, RegenerateButton)
