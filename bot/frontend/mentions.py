"""The shared assistant: answers @mentions and replies in any channel, and every message in a
thread the bot started (and, with ALLOW_DMS, every direct message); everyone in a channel
shares its history. Each answer first passes the gate (access rules and limits)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import discord
from discord.ext import commands
from redis.exceptions import RedisError

from bot.core.images import ImageError
from bot.core.keys import handled_message
from bot.frontend import messages as m
from bot.frontend.buttons import answer_view
from bot.frontend.gate import refusal_line, silent_for_mentions
from bot.frontend.help import HELP_TEXT
from bot.frontend.images import image_attachments, read_images
from bot.frontend.places import tool_context
from bot.frontend.sinks import ChannelSink, describe_channel

if TYPE_CHECKING:
    from bot.frontend.client import AssistantBot

log = logging.getLogger(__name__)

WAITING = "⏳"
BUSY = "I'm busy with earlier messages in this channel; try again in a moment."
DEDUPE_TTL = 24 * 3600


class _RefusedError(Exception):
    """A message the bot will not answer; the message is the one reply it gets instead."""


class SharedAssistant(commands.Cog):
    """Mentions, replies to the bot, and thread follow-ups."""

    def __init__(self, bot: AssistantBot) -> None:
        self.bot = bot
        self._waiting: dict[int, asyncio.Task[None]] = {}
        self._chores: set[asyncio.Task[None]] = set()

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        """Queue an answer when a message is meant for the bot."""
        if not await self._is_for_me(message):
            return
        channel = message.channel
        assert isinstance(channel, discord.abc.GuildChannel | discord.Thread | discord.DMChannel)
        if not isinstance(channel, discord.DMChannel) and not m.can_send(channel, channel.guild.me):
            log.warning(
                "Not answering in %s: the bot may not send messages there.",
                describe_channel(channel, channel.id),
            )
            return
        key = m.conversation_key(channel)
        queued = self.bot.turns.busy(key)
        if not self.bot.turns.submit(key, lambda: self._answer(message)):
            await self._reply_quietly(message, BUSY)
        elif queued:
            # It waits behind another answer: a ⏳ shows it was heard, until its turn comes.
            self._waiting[message.id] = self._in_background(self._react(message, add=True))

    async def _is_for_me(self, message: discord.Message) -> bool:
        """Mentions of the bot or its role, replies to it, any message in its threads, and
        (with ALLOW_DMS) every direct message."""
        me = self.bot.user
        if me is None or message.author.bot:
            return False
        if message.guild is None:
            return self.bot.settings.allow_dms and isinstance(message.channel, discord.DMChannel)
        guild_me = message.guild.me
        if m.mentions_bot(message, guild_me) or m.replies_to_bot(message, me):
            return True
        # /chat threads are the bot's own (it starts them), so no lookup is needed per message.
        channel = message.channel
        return isinstance(channel, discord.Thread) and channel.owner_id == me.id

    async def _claim(self, message: discord.Message) -> bool:
        """Whether this process is the one to answer (each message is handled once).

        With Redis unreachable every process answers; the answer then says the store is down."""
        try:
            claimed = await self.bot.deps.redis.set(
                handled_message(message.id), "1", nx=True, ex=DEDUPE_TTL
            )
        except RedisError as exc:
            log.warning("Could not claim message %s: %s", message.id, exc)
            return True
        return bool(claimed)

    def _in_background(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run small Discord chores beside the answers, keeping a reference until done."""
        task = asyncio.create_task(work)
        self._chores.add(task)
        task.add_done_callback(self._chores.discard)
        return task

    async def _react(self, message: discord.Message, *, add: bool) -> None:
        """Put the waiting mark on a message or take it off (best effort, paced)."""
        me = self.bot.user
        assert me is not None
        await self.bot.pacer.acquire(f"channel:{message.channel.id}:reactions", background=True)
        try:
            if add:
                await message.add_reaction(WAITING)
            else:
                await message.remove_reaction(WAITING, me)
        except discord.HTTPException as exc:
            log.debug("Could not change the waiting mark on %s: %s", message.id, exc)

    async def _answer(self, message: discord.Message) -> None:
        """Build the turn from the message (and what it replies to) and stream the answer."""
        mark = self._waiting.pop(message.id, None)
        if mark is not None:
            await mark  # the ⏳ went on while it waited; its turn has come, so take it off
            self._in_background(self._react(message, add=False))
        if not await self._claim(message):
            return
        channel = message.channel
        assert isinstance(channel, discord.abc.GuildChannel | discord.Thread | discord.DMChannel)
        refused = await self.bot.gate.admit(message.author, channel)
        if refused is not None:
            # Over a limit: a quiet reply says when to try again. Not allowed here or for their
            # roles: nothing, so a closed channel stays quiet.
            if not silent_for_mentions(refused):
                await self._reply_quietly(message, refusal_line(refused))
            return
        me = self.bot.user
        assert me is not None
        key = m.conversation_key(channel)
        settings = self.bot.settings
        try:
            text = await self._text(message, me)
            # Replying to someone's picture with a mention asks about that picture too.
            quoted = m.quoted_message(message, me)
            sources = [message] + ([quoted] if quoted else [])
            attachments = [image_attachments(source.attachments) for source in sources]
            refusal = await self.bot.turn_images.refusal(key) if any(attachments) else None
            if refusal:
                raise _RefusedError(refusal)
            own, *others = [
                await read_images(
                    found,
                    channel_id=channel.id,
                    message_id=source.id,
                    max_bytes=settings.max_image_bytes,
                )
                for source, found in zip(sources, attachments, strict=True)
            ]
            if not text and not own:
                raise _RefusedError(HELP_TEXT)
            loaded = {ref: data for images in (own, *others) for ref, data in images.items()}
            images = await self.bot.turn_images.source(key, loaded)
        except (_RefusedError, ImageError) as exc:
            await self._reply_quietly(message, str(exc))
            return
        context = m.reply_context(message, me, images=tuple(others[0]) if others else ())
        question = m.user_item(message, text, images=tuple(own))
        items = [item for item in (context, question) if item]
        sink = ChannelSink(
            message.channel,
            channel.id,
            trigger=message,
            mention_author=settings.reply_mentions_author,
            first_view=answer_view(key, message.author.id, streaming=True),
        )
        await self.bot.turns.run(
            key,
            items,
            asker_id=message.author.id,
            sink=sink,
            finish=self.bot.answer_buttons.finisher(sink),
            frontend="mention",
            images=images,
            context=tool_context(channel, message.author),
        )

    async def _text(self, message: discord.Message, me: discord.ClientUser) -> str:
        """What the message says with its text attachments; _RefusedError when it is too long."""
        limit = self.bot.settings.max_input_chars
        text = m.readable_text(message, me)
        try:
            extra = await m.attachment_text(message, limit - len(text))
        except m.AttachmentTooLargeError as exc:
            raise _RefusedError(
                f"{exc.filename} is {exc.size:,} bytes; I can take {limit:,} characters. "
                "Please shorten it."
            ) from None
        text = f"{text}\n\n{extra}".strip() if extra else text
        if len(text) > limit:
            raise _RefusedError(
                f"That message is {len(text):,} characters; I can take {limit:,}. "
                "Please shorten it."
            )
        return text

    async def _reply_quietly(self, message: discord.Message, text: str) -> None:
        """A short reply that never fails loudly (the channel may be read-only for us); it takes
        its slot in the channel's bucket like every other message the bot sends there."""
        await self.bot.pacer.acquire(f"channel:{message.channel.id}", urgent=True)
        try:
            await message.channel.send(
                text,
                reference=message.to_reference(fail_if_not_exists=False),
                mention_author=False,
                suppress_embeds=True,
            )
        except discord.HTTPException as exc:
            log.warning("Could not reply in channel %s: %s", message.channel.id, exc)


async def setup(bot: AssistantBot) -> None:
    """Load the shared assistant."""
    await bot.add_cog(SharedAssistant(bot))
