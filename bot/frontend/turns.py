"""Running answers in Discord: a queue per conversation, the renderer and the model stream side
by side, and a registry of what is streaming so Stop can find it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import discord
from redis.exceptions import RedisError

from bot.core.conversation import TurnRequest, TurnResult
from bot.core.errors import StorageError
from bot.core.events import Failed, HistoryItem
from bot.core.keys import ConversationKey
from bot.core.renderer import (
    MessageGone,
    MessageSink,
    RenderResult,
    ReplyRenderer,
    SentMessage,
    SinkError,
)
from bot.core.turnlock import TurnLockTimeout
from bot.frontend.buttons import answer_view, last_answer, remember_last_answer
from bot.frontend.sinks import NO_PINGS, ChannelSink, ViewSink

if TYPE_CHECKING:
    from bot.frontend.client import AssistantBot

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[None]]


@dataclass(slots=True)
class Running:
    """An answer that is streaming now."""

    key: ConversationKey
    asker_id: int
    stop: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(frozen=True, slots=True)
class Answer:
    """What came of one answer: the turn's outcome and the messages that show it."""

    turn: TurnResult
    render: RenderResult


class TurnRunner:
    """Queues turns per conversation (FIFO, bounded) and runs each with a live renderer."""

    def __init__(self, bot: AssistantBot) -> None:
        self.bot = bot
        self._queues: dict[ConversationKey, deque[Job]] = {}
        self._workers: dict[ConversationKey, asyncio.Task[None]] = {}
        self._running: dict[ConversationKey, Running] = {}

    def submit(self, key: ConversationKey, job: Job) -> bool:
        """Queue a job for a conversation; False when QUEUE_DEPTH jobs already wait."""
        queue = self._queues.setdefault(key, deque())
        if len(queue) >= self.bot.settings.queue_depth + 1:
            return False
        queue.append(job)
        if key not in self._workers:
            self._workers[key] = asyncio.create_task(self._work(key), name=f"turns {key}")
        return True

    async def _work(self, key: ConversationKey) -> None:
        """Run a conversation's jobs one by one, in the order they came."""
        queue = self._queues[key]
        try:
            while queue:
                job = queue[0]
                try:
                    await job()
                except Exception:
                    log.exception("An answer in %s failed", key)
                finally:
                    queue.popleft()
        finally:
            self._workers.pop(key, None)
            if not queue:
                self._queues.pop(key, None)

    def busy(self, key: ConversationKey) -> bool:
        """Whether a conversation has an answer running or waiting (a new one would queue)."""
        return bool(self._queues.get(key))

    def running(self, key: ConversationKey) -> Running | None:
        """The answer streaming in a conversation, if any."""
        return self._running.get(key)

    async def answer(
        self,
        key: ConversationKey,
        new_items: Sequence[HistoryItem],
        *,
        asker_id: int,
        sink: MessageSink,
        record: bool = True,
        existing: Sequence[SentMessage] = (),
    ) -> Answer:
        """Stream one answer into the sink while the model writes it; store the turn.

        If Redis fails (down, restarting, or the turn lock cannot be had), the answer ends with a
        one-line notice instead of failing silently."""
        running = Running(key=key, asker_id=asker_id)
        renderer = ReplyRenderer(sink, self.bot.pacer, on_gone=running.stop.set, existing=existing)
        self._running[key] = running
        render_task = asyncio.create_task(renderer.run())
        try:
            result = await self._run_turn(
                key,
                new_items=new_items,
                asker_id=asker_id,
                running=running,
                renderer=renderer,
                record=record,
                regenerate=bool(existing),
            )
        except BaseException:
            render_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await render_task
            raise
        finally:
            self._running.pop(key, None)
        _log_usage(key, result)
        return Answer(turn=result, render=await render_task)

    async def _run_turn(
        self,
        key: ConversationKey,
        *,
        new_items: Sequence[HistoryItem],
        asker_id: int,
        running: Running,
        renderer: ReplyRenderer,
        record: bool,
        regenerate: bool,
    ) -> TurnResult:
        """Read the choices in force and run the turn; a storage failure becomes a notice."""
        try:
            prefs = await self.bot.prefs.effective(key)
            turn = TurnRequest(
                key=key,
                new_items=new_items,
                user_key=f"discord:{asker_id}",
                model=prefs["model"].value,
                instructions=_instructions(prefs["system"].value),
                record=record,
                regenerate=regenerate,
            )
            return await self.bot.deps.core.service.run_turn(turn, renderer.feed, stop=running.stop)
        except (RedisError, TurnLockTimeout) as exc:
            log.warning("Conversation store failed in %s: %s", key, exc)
            failed = Failed(StorageError(str(exc)))
            renderer.feed(failed)
            return TurnResult(text="", final=failed)

    async def finish_buttons(
        self, key: ConversationKey, asker_id: int, sink: ViewSink, answer: Answer
    ) -> None:
        """Swap Stop for Regenerate once an answer is done, and remember it as the latest."""
        messages = answer.render.messages
        if answer.render.gone or not messages:
            return
        ids = [m.id for m in messages]
        # Remember it before Regenerate shows, so a quick press finds it already the latest.
        try:
            previous = await last_answer(self.bot, key)
            await remember_last_answer(self.bot, key, ids)
        except RedisError as exc:
            log.warning("Could not remember the latest answer in %s: %s", key, exc)
            previous = None
        first, last = messages[0], messages[-1]
        pacer = self.bot.pacer
        try:
            if first.id != last.id:
                await pacer.acquire(first.bucket, urgent=True)
                await sink.set_view(first, None)
            await pacer.acquire(last.bucket, urgent=True)
            await sink.set_view(last, answer_view(key, asker_id, streaming=False))
        except (MessageGone, SinkError) as exc:
            log.info("Could not update the buttons of an answer in %s: %s", key, exc)
            return
        if previous and previous[-1] not in ids:
            await self._drop_regenerate(key, previous[-1])

    async def _drop_regenerate(self, key: ConversationKey, message_id: str) -> None:
        """Take Regenerate off the answer that is no longer the latest (best effort)."""
        channel = self.bot.get_channel(int(key.channel))
        if not isinstance(channel, discord.TextChannel | discord.Thread):
            return
        try:
            await self.bot.pacer.acquire(f"channel:{channel.id}")
            await channel.get_partial_message(int(message_id)).edit(
                view=None, allowed_mentions=NO_PINGS
            )
        except discord.HTTPException as exc:
            log.info("Could not take Regenerate off message %s: %s", message_id, exc)

    async def regenerate(self, key: ConversationKey, asker_id: int, message_ids: list[str]) -> None:
        """Answer the conversation's last question again, into the same messages."""
        channel = self.bot.get_channel(int(key.channel))
        if not isinstance(channel, discord.TextChannel | discord.Thread):
            log.info("Cannot regenerate in %s: channel not found", key)
            return
        sink = ChannelSink(channel, channel.id)
        for message_id in message_ids:
            sink.messages[message_id] = channel.get_partial_message(int(message_id))
        existing = [SentMessage(id=i, bucket=sink.send_bucket) for i in message_ids]
        answer = await self.answer(key, [], asker_id=asker_id, sink=sink, existing=existing)
        for extra in answer.render.unused:
            try:
                await self.bot.pacer.acquire(extra.bucket, urgent=True)
                await channel.get_partial_message(int(extra.id)).delete()
            except discord.HTTPException as exc:
                log.info("Could not delete a leftover message %s: %s", extra.id, exc)
        await self.finish_buttons(key, asker_id, sink, answer)

    async def shutdown(self) -> None:
        """Stop every streaming answer; their text so far is kept."""
        for running in list(self._running.values()):
            running.stop.set()
        workers = list(self._workers.values())
        if workers:
            await asyncio.wait(workers, timeout=10)


def _log_usage(key: ConversationKey, result: TurnResult) -> None:
    """One line per answer with what it cost, so an owner can watch spending in the log."""
    final = result.final
    if isinstance(final, Failed):
        log.info("Answer in %s failed: %s", key, final.error)
        return
    usage = final.usage
    cost = f", ${usage.cost:.5f}" if usage.cost is not None else ""
    log.info(
        "Answered in %s with %s (%s): %d tokens in (%d cached), %d out%s.",
        key,
        final.model or "?",
        result.outcome,
        usage.input_tokens,
        usage.cached_tokens,
        usage.output_tokens,
        cost,
    )


SPEAKER_NOTE = (
    "Messages from people in this Discord channel start with [Display Name]: — that prefix, "
    "added by the bot, tells you who is speaking. Never write such a prefix yourself."
)


def _instructions(system_prompt: str) -> str:
    """The system prompt plus the note on how speakers are marked."""
    return f"{system_prompt.strip()}\n\n{SPEAKER_NOTE}"
