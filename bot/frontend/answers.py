"""The Discord side of running answers: the buttons an answer ends with, and Regenerate, which
answers again into the same messages. The queue and the streaming itself are the core's
`TurnRunner`; this adapter only knows how Discord shows them. With several processes, Stop and
Regenerate go through the core's `AnswerControl` to the process that runs the answer or holds
the channel's shard."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import discord

from bot.core.control import AnswerControl, RegenerateOutcome, RunningRecord, StopOutcome
from bot.core.keys import ConversationKey
from bot.core.last_answers import LastAnswers
from bot.core.pacing import EditPacer
from bot.core.renderer import MessageGone, SentMessage, SinkError
from bot.core.tools.context import ToolContext
from bot.core.turns import Finish, Finished, Running, TurnRunner
from bot.frontend.buttons import answer_view
from bot.frontend.gate import Gate, refusal_line
from bot.frontend.images import TurnImages
from bot.frontend.sinks import NO_PINGS, ChannelSink, ViewSink

log = logging.getLogger(__name__)

AnswerChannel = discord.TextChannel | discord.Thread | discord.DMChannel
FindChannel = Callable[[int], object]
"""Looks a channel up by id (the client's cache); anything but a text channel or thread is
treated as not found."""


class AnswerButtons:
    """Finishes the buttons of answers and runs Regenerate; what the buttons' presses call."""

    def __init__(
        self,
        turns: TurnRunner,
        last_answers: LastAnswers,
        pacer: EditPacer,
        find_channel: FindChannel,
        gate: Gate | None = None,
        *,
        images: TurnImages | None = None,
    ) -> None:
        self._gate = gate
        self._turns = turns
        self._last_answers = last_answers
        self._pacer = pacer
        self._find_channel = find_channel
        self.control: AnswerControl[Running] | None = None
        """Set when the bot runs beside other processes (see bot.frontend.app)."""
        self._images = images

    def finisher(self, sink: ViewSink) -> Finish:
        """Swap Stop for Regenerate on the answer shown by `sink` once it is done."""

        async def finish(done: Finished) -> None:
            await self._finish(sink, done)

        return finish

    async def _finish(self, sink: ViewSink, done: Finished) -> None:
        """Take Stop off, put Regenerate on the last part, and take it off the previous answer.

        An answer that failed unexpectedly or could not be stored only loses Stop."""
        messages = done.shown
        if not messages:
            return
        first, last = messages[0], messages[-1]
        try:
            if first.id != last.id:
                await self._pacer.acquire(first.bucket, urgent=True)
                await sink.set_view(first, None)
            await self._pacer.acquire(last.bucket, urgent=True)
            # An answer that crashed or was not stored keeps its notice only: nothing to
            # regenerate it from.
            view = (
                answer_view(done.key, done.asker_id, streaming=False)
                if done.answer.regenerable
                else None
            )
            await sink.set_view(last, view)
        except (MessageGone, SinkError) as exc:
            log.info("Could not update the buttons of an answer in %s: %s", done.key, exc)
            return
        previous = done.previous
        if previous and previous[-1] not in {m.id for m in messages}:
            await self._drop_regenerate(done.key, previous[-1])

    def _channel(self, key: ConversationKey) -> AnswerChannel | None:
        """The conversation's channel or thread, if the client knows it."""
        channel = self._find_channel(int(key.channel))
        return channel if isinstance(channel, AnswerChannel) else None

    async def _drop_regenerate(self, key: ConversationKey, message_id: str) -> None:
        """Take Regenerate off the answer that is no longer the latest (best effort)."""
        channel = self._channel(key)
        if channel is None:
            return
        try:
            await self._pacer.acquire(f"channel:{channel.id}")
            await channel.get_partial_message(int(message_id)).edit(
                view=None, allowed_mentions=NO_PINGS
            )
        except discord.HTTPException as exc:
            log.info("Could not take Regenerate off message %s: %s", message_id, exc)

    async def find(self, key: ConversationKey) -> RunningRecord | None:
        """Which process streams an answer in a conversation, and for whom (for /stop)."""
        if self.control is not None:
            return await self.control.find(key)
        running = self._turns.running(key)
        return None if running is None else RunningRecord("", running.asker_id)

    async def stop(self, key: ConversationKey) -> StopOutcome:
        """Stop the answer streaming in a conversation, in whichever process runs it."""
        if self.control is not None:
            return await self.control.stop(key)
        running = self._turns.running(key)
        if running is None:
            return "finished"
        running.stop.set()
        return "stopped"

    async def refusal(self, interaction: discord.Interaction[Any]) -> str | None:
        """Why the presser may not have a new answer now (a regenerated answer costs as much
        as a new one), or None."""
        if self._gate is None:
            return None
        refused = await self._gate.admit(
            interaction.user, interaction.channel, is_admin=interaction.permissions.manage_guild
        )
        return None if refused is None else refusal_line(refused)

    def running(self, key: ConversationKey) -> Running | None:
        """The answer streaming in a conversation, if any (for Stop)."""
        return self._turns.running(key)

    async def latest_answer(self, key: ConversationKey) -> list[str] | None:
        """The message ids of the conversation's latest answer, if known."""
        return await self._last_answers.get(key)

    async def regenerate(
        self,
        key: ConversationKey,
        asker_id: int,
        message_ids: list[str],
        context: ToolContext | None = None,
    ) -> RegenerateOutcome:
        """Queue answering the last question again, in the process holding the channel's shard
        (here with the tools of `context`, the place and the presser)."""

        def here() -> bool:
            return self.queue_regenerate(key, asker_id, message_ids, context)

        if self.control is not None:
            return await self.control.regenerate(key, asker_id, message_ids, here=here)
        return "queued" if here() else "busy"

    def queue_regenerate(
        self,
        key: ConversationKey,
        asker_id: int,
        message_ids: list[str],
        context: ToolContext | None = None,
    ) -> bool:
        """Queue answering the last question again into these messages here; False when busy."""
        return self._turns.submit(
            key, lambda: self._regenerate(key, asker_id, message_ids, context)
        )

    async def _regenerate(
        self,
        key: ConversationKey,
        asker_id: int,
        message_ids: list[str],
        context: ToolContext | None = None,
    ) -> None:
        """Answer the conversation's last question again, into the same messages."""
        channel = self._channel(key)
        if channel is None:
            log.info("Cannot regenerate in %s: channel not found", key)
            return
        sink = ChannelSink(channel, channel.id)
        for message_id in message_ids:
            sink.messages[message_id] = channel.get_partial_message(int(message_id))
        existing = [SentMessage(id=i, bucket=sink.send_bucket) for i in message_ids]
        finish_buttons = self.finisher(sink)

        async def finish(done: Finished) -> None:
            for extra in done.answer.render.unused:
                await self._delete(channel, extra)
            await finish_buttons(done)

        # The question's images are in history: fetched again, unless the model reads only text.
        images = None if self._images is None else await self._images.source(key, {})
        await self._turns.run(
            key,
            [],
            asker_id=asker_id,
            sink=sink,
            existing=existing,
            finish=finish,
            frontend="regenerate",
            images=images,
            context=context,
        )

    async def _delete(self, channel: AnswerChannel, message: SentMessage) -> None:
        """Delete a part the new answer no longer needs (best effort)."""
        try:
            await self._pacer.acquire(message.bucket, urgent=True)
            await channel.get_partial_message(int(message.id)).delete()
        except discord.HTTPException as exc:
            log.info("Could not delete a leftover message %s: %s", message.id, exc)
