"""Slash commands: /ask, /chat, /reset, /model, /system, /settings, /stop, /help."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.core.events import HistoryItem
from bot.core.keys import ConversationKey
from bot.core.prefs import PrefName
from bot.frontend import messages as m
from bot.frontend.buttons import answer_view, may_control
from bot.frontend.help import HELP_TEXT
from bot.frontend.sinks import ChannelSink, InteractionSink

if TYPE_CHECKING:
    from bot.frontend.client import AssistantBot

log = logging.getLogger(__name__)

Interaction = discord.Interaction[Any]
ScopeChoice = Literal["channel", "server"]
BUSY = "I'm busy with earlier messages in this channel; try again in a moment."
CLEAR_WORDS = {"default", "reset", "clear"}


def thread_name(prompt: str) -> str:
    """A thread title from the prompt: one line, 1 to 100 characters."""
    line = " ".join(prompt.split())
    return (line[:97] + "…") if len(line) > 100 else (line or "Conversation")


def _key(interaction: Interaction) -> ConversationKey | None:
    """The conversation of the channel or thread the command was used in."""
    channel = interaction.channel
    if interaction.guild_id is None or channel is None:
        return None
    return ConversationKey(str(interaction.guild_id), str(channel.id))


class SlashCommands(commands.Cog):
    """Every slash command of the bot."""

    def __init__(self, bot: AssistantBot) -> None:
        self.bot = bot

    async def _refuse_input(self, interaction: Interaction, prompt: str) -> bool:
        """Refuse an empty or over-long prompt before deferring (no I/O needed to tell)."""
        limit = self.bot.settings.max_input_chars
        if not prompt.strip():
            message = "Please write a question."
        elif len(prompt) > limit:
            message = f"That is {len(prompt):,} characters; I can take {limit:,}."
        else:
            return False
        await interaction.response.send_message(message, ephemeral=True)
        return True

    def _readable(self, interaction: Interaction, prompt: str) -> str:
        """The prompt with its mentions named, as the model should read it."""
        me = self.bot.user
        assert me is not None
        return m.readable_prompt(prompt, interaction.guild, me)

    async def _guild_only(self, interaction: Interaction) -> ConversationKey | None:
        """The conversation key, or an ephemeral refusal outside a server."""
        key = _key(interaction)
        if key is None:
            await interaction.response.send_message("I work in servers only.", ephemeral=True)
        return key

    @app_commands.command(
        name="ask", description="Ask the assistant; the channel's conversation is used"
    )
    @app_commands.describe(
        prompt="Your question", private="Only you see the answer, and it is not kept"
    )
    async def ask(self, interaction: Interaction, prompt: str, private: bool = False) -> None:
        """Answer in the channel (or privately) with the channel's history."""
        if await self._refuse_input(interaction, prompt):
            return
        key = await self._guild_only(interaction)
        if key is None:
            return
        await interaction.response.defer(thinking=True, ephemeral=private)
        asker = interaction.user.id
        item = HistoryItem(
            role="user",
            text=self._readable(interaction, prompt),
            speaker=m.speaker_name(interaction.user),
            ref=str(interaction.id),
        )
        view = None if private else answer_view(key, asker, streaming=True)
        sink = InteractionSink(interaction, private=private, first_view=view)

        turns = self.bot.turns
        finish = None if private else self.bot.answer_buttons.finisher(sink)

        async def job() -> None:
            await turns.run(
                key, [item], asker_id=asker, sink=sink, finish=finish, record=not private
            )

        if not turns.submit(key, job):
            await interaction.edit_original_response(content=BUSY)

    @app_commands.command(name="chat", description="Start a thread conversation with the assistant")
    @app_commands.describe(prompt="What to talk about")
    async def chat(self, interaction: Interaction, prompt: str) -> None:
        """Open a thread named from the prompt and answer in it; later messages continue it."""
        if await self._refuse_input(interaction, prompt):
            return
        channel = interaction.channel
        if not isinstance(channel, discord.TextChannel):
            await interaction.response.send_message(
                "Use /chat in a text channel; in a thread, just write.", ephemeral=True
            )
            return
        await interaction.response.send_message(
            f"{interaction.user.mention} started a conversation: {prompt}"[:2000]
        )
        starter = await interaction.original_response()
        try:
            thread = await starter.create_thread(
                name=thread_name(prompt), auto_archive_duration=1440
            )
        except discord.HTTPException as exc:
            log.warning("Could not create a thread in %s: %s", channel.id, exc)
            await interaction.followup.send("I could not start a thread here.", ephemeral=True)
            return
        key = m.conversation_key(thread)
        await self.bot.prefs.set_owner(key, str(interaction.user.id))
        asker = interaction.user.id
        item = HistoryItem(
            role="user",
            text=self._readable(interaction, prompt),
            speaker=m.speaker_name(interaction.user),
            ref=str(starter.id),
        )
        sink = ChannelSink(thread, thread.id, first_view=answer_view(key, asker, streaming=True))

        turns = self.bot.turns
        finish = self.bot.answer_buttons.finisher(sink)

        async def job() -> None:
            await turns.run(key, [item], asker_id=asker, sink=sink, finish=finish)

        turns.submit(key, job)

    @app_commands.command(
        name="reset", description="Forget this channel's or thread's conversation"
    )
    async def reset(self, interaction: Interaction) -> None:
        """Clear the history (the thread's owner, or anyone who may manage messages)."""
        key = await self._guild_only(interaction)
        if key is None:
            return
        owner = await self.bot.prefs.owner(key)
        if not (interaction.permissions.manage_messages or owner == str(interaction.user.id)):
            await interaction.response.send_message(
                "Only the thread's owner or someone with Manage Messages can reset it.",
                ephemeral=True,
            )
            return
        await self.bot.core.store.clear(key)
        await interaction.response.send_message(
            f"🧹 {interaction.user.mention} reset the conversation; earlier messages are forgotten."
        )

    async def _show_or_set(
        self, interaction: Interaction, name: PrefName, value: str | None, scope: ScopeChoice
    ) -> None:
        """Show the value in force, or set it (Manage Server) for the channel or server."""
        key = await self._guild_only(interaction)
        if key is None:
            return
        label = "model" if name == "model" else "system prompt"
        if value is None:
            eff = (await self.bot.prefs.effective(key))[name]
            await interaction.response.send_message(
                f"The {label} here is `{eff.value}` (from the {eff.source} setting)."
                if name == "model"
                else f"The {label} here (from the {eff.source} setting):\n>>> {eff.value}",
                ephemeral=True,
            )
            return
        if not interaction.permissions.manage_guild:
            await interaction.response.send_message(
                f"Changing the {label} needs the Manage Server permission.", ephemeral=True
            )
            return
        clear = value.strip().lower() in CLEAR_WORDS
        if name == "model" and not clear:
            known, close = await self.bot.catalog.check(value.strip())
            if not known:
                hint = f" Did you mean {', '.join(f'`{c}`' for c in close)}?" if close else ""
                await interaction.response.send_message(
                    f"OpenRouter has no model `{value.strip()}`.{hint}", ephemeral=True
                )
                return
        await self.bot.prefs.set(key, scope, name, "" if clear else value.strip())
        where = "this channel" if scope == "channel" else "this server"
        what = (
            "back to the default" if clear else (f"to `{value.strip()}`" if name == "model" else "")
        )
        await interaction.response.send_message(
            f"Set the {label} for {where} {what}".rstrip() + "."
        )

    @app_commands.command(name="model", description="Show or set the model")
    @app_commands.describe(
        name="Model id, e.g. openai/gpt-4o-mini ('default' to clear)",
        scope="Set it for this channel (default) or the whole server",
    )
    async def model(
        self, interaction: Interaction, name: str | None = None, scope: ScopeChoice = "channel"
    ) -> None:
        """Show the model in force, or set it."""
        await self._show_or_set(interaction, "model", name, scope)

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
        await self._show_or_set(interaction, "system", prompt, scope)

    @app_commands.command(
        name="settings", description="What is in force here and where it comes from"
    )
    async def settings(self, interaction: Interaction) -> None:
        """The effective model, system prompt, history size and limits, with their sources."""
        key = await self._guild_only(interaction)
        if key is None:
            return
        eff = await self.bot.prefs.effective(key)
        items = await self.bot.core.store.load(key)
        s = self.bot.settings
        system = eff["system"].value
        system = system if len(system) <= 300 else system[:299] + "…"
        lines = [
            f"**Model**: `{eff['model'].value}` ({eff['model'].source})",
            f"**System prompt** ({eff['system'].source}): {system}",
            f"**History**: {len(items)} of at most {s.history_max_messages} items "
            f"({sum(len(i.text) for i in items):,} of {s.history_max_chars:,} characters), "
            f"forgotten after {s.history_ttl_seconds // 3600} h idle (default)",
            f"**Limits**: questions up to {s.max_input_chars:,} characters, answers up to "
            f"{s.max_output_tokens:,} tokens (default)",
        ]
        await interaction.response.send_message("\n".join(lines), ephemeral=True)

    @app_commands.command(name="stop", description="Stop the answer streaming in this channel")
    async def stop(self, interaction: Interaction) -> None:
        """Stop the streaming answer (the asker, or Manage Messages); its text stays."""
        key = await self._guild_only(interaction)
        if key is None:
            return
        running = self.bot.turns.running(key)
        if running is None:
            await interaction.response.send_message("Nothing is streaming here.", ephemeral=True)
            return
        if not may_control(interaction, running.asker_id):
            await interaction.response.send_message(
                "Only the person who asked (or a moderator) can stop this answer.", ephemeral=True
            )
            return
        running.stop.set()
        await interaction.response.send_message("Stopped.", ephemeral=True)

    @app_commands.command(name="help", description="What the assistant does and how to use it")
    async def help(self, interaction: Interaction) -> None:
        """One screen of help."""
        await interaction.response.send_message(HELP_TEXT, ephemeral=True)

    async def cog_app_command_error(
        self, interaction: Interaction, error: app_commands.AppCommandError
    ) -> None:
        """Any unexpected failure: one sentence to the user, the details in the log."""
        log.error(
            "Command /%s failed",
            interaction.command.name if interaction.command else "?",
            exc_info=error,
        )
        text = "Something went wrong on my side; please try again."
        try:
            if interaction.response.is_done():
                await interaction.followup.send(text, ephemeral=True)
            else:
                await interaction.response.send_message(text, ephemeral=True)
        except discord.HTTPException:
            log.warning("Could not tell the user about the failure.")


async def setup(bot: AssistantBot) -> None:
    """Load the slash commands."""
    await bot.add_cog(SlashCommands(bot))
