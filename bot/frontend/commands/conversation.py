"""Conversation commands: /ask, /chat, /reset, /stop and /help."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bot.core.events import HistoryItem
from bot.core.images import (
    ACCEPTED_TYPES,
    ImageError,
    ImageRef,
    ImageSource,
    display_name,
    is_image_attachment,
    size_refusal,
)
from bot.core.keys import ConversationKey
from bot.frontend import messages as m
from bot.frontend.buttons import UNREACHABLE, answer_view, may_control
from bot.frontend.commands.common import BUSY, CommandCog, Interaction, guild_only
from bot.frontend.gate import refusal_line
from bot.frontend.help import HELP_TEXT
from bot.frontend.images import read_images
from bot.frontend.places import interaction_context, tool_context
from bot.frontend.sinks import ChannelSink, InteractionSink

if TYPE_CHECKING:
    from bot.frontend.client import AssistantBot

log = logging.getLogger(__name__)

WEB_DESCRIPTION = "Search the web and list the sources (default: the /web choice here)"
THREAD_WEB_DESCRIPTION = "Search the web in this thread and list sources (default: the /web choice)"


IMAGE_OPTION = "An image to ask about (PNG, JPEG, WebP or a still GIF)"


async def refuse_deferred(interaction: Interaction, text: str, *, private: bool) -> None:
    """One sentence for the asker alone once the answer was deferred: a public "thinking"
    message is taken away first, so the channel sees nothing."""
    if private:
        await interaction.edit_original_response(content=text)
        return
    await interaction.delete_original_response()
    await interaction.followup.send(text, ephemeral=True)


def thread_name(prompt: str) -> str:
    """A thread title from the prompt: one line, 1 to 100 characters."""
    line = " ".join(prompt.split())
    return (line[:97] + "…") if len(line) > 100 else (line or "Conversation")


class ConversationCommands(CommandCog):
    """Asking, threads, forgetting and stopping."""

    def __init__(self, bot: AssistantBot) -> None:
        self.bot = bot

    async def _refuse_input(
        self, interaction: Interaction, prompt: str, image: discord.Attachment | None = None
    ) -> bool:
        """Refuse an empty or over-long prompt, or an image that is not one or too big, before
        deferring (no I/O needed to tell)."""
        limit = self.bot.settings.max_input_chars
        if not prompt.strip():
            message = "Please write a question."
        elif len(prompt) > limit:
            message = f"That is {len(prompt):,} characters; I can take {limit:,}."
        elif image is not None and not is_image_attachment(image.filename, image.content_type):
            name = display_name(image.filename)
            message = f"The file {name} is not an image the bot can read; send {ACCEPTED_TYPES}."
        elif image is not None and (
            too_big := size_refusal(
                image.filename, image.size, max_bytes=self.bot.settings.max_image_bytes
            )
        ):
            message = too_big
        else:
            return False
        await interaction.response.send_message(message, ephemeral=True)
        return True

    async def _images(
        self, interaction: Interaction, key: ConversationKey, image: discord.Attachment | None
    ) -> tuple[dict[ImageRef, bytes], ImageSource | None]:
        """The command's image, checked and downloaded, and the turn's image source;
        ImageError with the one sentence the asker gets instead of an answer."""
        if image is not None and (refusal := await self.bot.turn_images.refusal(key)):
            raise ImageError(refusal)
        loaded = await read_images(
            [image] if image is not None else [],
            channel_id=interaction.channel_id or 0,
            message_id=None,  # an option's image belongs to no message: later turns name it
            max_bytes=self.bot.settings.max_image_bytes,
        )
        return loaded, await self.bot.turn_images.source(key, loaded)

    def _question(
        self,
        interaction: Interaction,
        prompt: str,
        ref: str,
        images: tuple[ImageRef, ...] = (),
    ) -> HistoryItem:
        """The prompt as a history item, its mentions named as the model should read them."""
        me = self.bot.user
        assert me is not None
        return HistoryItem(
            role="user",
            text=m.readable_prompt(prompt, interaction.guild, me),
            speaker=m.speaker_name(interaction.user),
            ref=ref,
            author=str(interaction.user.id),
            images=images,
        )

    async def _refused(self, interaction: Interaction, channel: object) -> bool:
        """Whether the gate refuses the caller an answer here; if so they are told privately."""
        refused = await self.bot.gate.admit(
            interaction.user, channel, is_admin=interaction.permissions.manage_guild
        )
        if refused is None:
            return False
        await interaction.response.send_message(refusal_line(refused), ephemeral=True)
        return True

    @app_commands.command(
        name="ask", description="Ask the assistant; the channel's conversation is used"
    )
    @app_commands.describe(
        prompt="Your question",
        image=IMAGE_OPTION,
        private="Only you see the answer, and it is not kept",
        web=WEB_DESCRIPTION,
    )
    async def ask(
        self,
        interaction: Interaction,
        prompt: str,
        image: discord.Attachment | None = None,
        private: bool = False,
        web: bool | None = None,
    ) -> None:
        """Answer in the channel (or privately) with the channel's history; `web` searches the
        web for this answer (or not), whatever the channel's choice."""
        if await self._refuse_input(interaction, prompt, image):
            return
        key = await guild_only(interaction)
        if key is None or await self._refused(interaction, interaction.channel):
            return
        await interaction.response.defer(thinking=True, ephemeral=private)
        try:
            loaded, images = await self._images(interaction, key, image)
        except ImageError as exc:
            await refuse_deferred(interaction, str(exc), private=private)
            return
        asker = interaction.user.id
        item = self._question(interaction, prompt, str(interaction.id), tuple(loaded))
        view = None if private else answer_view(key, asker, streaming=True)
        sink = InteractionSink(interaction, private=private, first_view=view)
        turns = self.bot.turns
        finish = None if private else self.bot.answer_buttons.finisher(sink)
        context = interaction_context(interaction)

        async def job() -> None:
            await turns.run(
                key,
                [item],
                asker_id=asker,
                sink=sink,
                finish=finish,
                record=not private,
                frontend="ask",
                images=images,
                context=context,
                web=web,
            )

        if not turns.submit(key, job):
            await interaction.edit_original_response(content=BUSY)

    @app_commands.command(name="chat", description="Start a thread conversation with the assistant")
    @app_commands.describe(
        prompt="What to talk about", image=IMAGE_OPTION, web=THREAD_WEB_DESCRIPTION
    )
    async def chat(
        self,
        interaction: Interaction,
        prompt: str,
        image: discord.Attachment | None = None,
        web: bool | None = None,
    ) -> None:
        """Open a thread named from the prompt and answer in it; later messages continue it.
        `web` becomes the thread's own web search choice (the asker's conversation)."""
        if await self._refuse_input(interaction, prompt, image):
            return
        channel = interaction.channel
        if not isinstance(channel, discord.TextChannel):
            await interaction.response.send_message(
                "Use /chat in a text channel; in a thread, just write.", ephemeral=True
            )
            return
        if await self._refused(interaction, channel):
            return
        opening = f"{interaction.user.mention} started a conversation: {prompt}"[:2000]
        # A thread not made yet has no choices of its own: a key no channel has gives the
        # server's model (or the default), which the thread will answer with.
        unmade = ConversationKey(str(channel.guild.id), str(interaction.id))
        loaded: dict[ImageRef, bytes] = {}
        images: ImageSource | None = None
        if image is None:
            await interaction.response.send_message(opening)
        else:
            await interaction.response.defer(thinking=True)  # downloading may take a while
            try:
                loaded, images = await self._images(interaction, unmade, image)
            except ImageError as exc:
                await refuse_deferred(interaction, str(exc), private=False)
                return
            await interaction.edit_original_response(content=opening)
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
        if web is not None:
            await self.bot.prefs.set(key, "channel", "web", "on" if web else "off")
        asker = interaction.user.id
        item = self._question(interaction, prompt, str(starter.id), tuple(loaded))
        sink = ChannelSink(thread, thread.id, first_view=answer_view(key, asker, streaming=True))
        turns = self.bot.turns
        finish = self.bot.answer_buttons.finisher(sink)
        context = tool_context(thread, interaction.user)

        async def job() -> None:
            await turns.run(
                key,
                [item],
                asker_id=asker,
                sink=sink,
                finish=finish,
                frontend="chat",
                images=images,
                context=context,
                web=web,
            )

        turns.submit(key, job)

    @app_commands.command(
        name="reset", description="Forget this channel's or thread's conversation"
    )
    async def reset(self, interaction: Interaction) -> None:
        """Clear the history (the thread's owner, or anyone who may manage messages)."""
        key = await guild_only(interaction)
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
        await self.bot.last_answers.clear(key)  # so Regenerate finds nothing to redo
        await interaction.response.send_message(
            f"🧹 {interaction.user.mention} reset the conversation; earlier messages are forgotten."
        )

    @app_commands.command(name="stop", description="Stop the answer streaming in this channel")
    async def stop(self, interaction: Interaction) -> None:
        """Stop the streaming answer (the asker, or Manage Messages); its text stays."""
        key = await guild_only(interaction)
        if key is None:
            return
        actions = self.bot.button_actions
        running = await actions.find(key)  # in this process or another one of the bot
        if running is None:
            await interaction.response.send_message("Nothing is streaming here.", ephemeral=True)
            return
        if not may_control(interaction, running.asker_id):
            await interaction.response.send_message(
                "Only the person who asked (or a moderator) can stop this answer.", ephemeral=True
            )
            return
        outcome = await actions.stop(key)
        text = {"stopped": "Stopped.", "finished": "Nothing is streaming here."}.get(outcome)
        await interaction.response.send_message(text or UNREACHABLE, ephemeral=True)

    @app_commands.command(name="help", description="What the assistant does and how to use it")
    async def help(self, interaction: Interaction) -> None:
        """One screen of help."""
        await interaction.response.send_message(HELP_TEXT, ephemeral=True)
