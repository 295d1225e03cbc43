"""One conversation turn end to end: lock, load history, stream the answer, store the outcome."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal

from redis.exceptions import RedisError

from bot.core.context import RetryShorter, fit_history, input_budget
from bot.core.errors import LLMError
from bot.core.events import (
    STOPPED_REASON,
    Completed,
    Failed,
    FinalEvent,
    HistoryItem,
    Incomplete,
    StreamEvent,
    TextDelta,
)
from bot.core.history import HistoryStore, turn_items
from bot.core.images import ImageSource, resolve_images
from bot.core.keys import ConversationKey
from bot.core.options import AnswerOptions
from bot.core.responses import EventSource, ResponsesClient
from bot.core.tools.loop import ToolLoop
from bot.core.tools.registry import Toolset
from bot.core.turnlock import TurnLock

log = logging.getLogger(__name__)

NOT_SAVED_NOTICE: Final = "-# ⚠️ This answer could not be saved, so I won't remember it."


class NothingToAnswerError(LLMError):
    """The turn has no input at all (e.g. Regenerate after /reset); no request is sent."""

    default_user_message = "There is no question to answer here; the conversation was reset."


class UnexpectedTurnError(LLMError):
    """A turn failed with an exception nobody expected (a bug, a broken stored value)."""

    default_user_message = "Something went wrong on my side; please try again."


@dataclass(frozen=True, slots=True)
class TurnRequest:
    """What one turn needs: where, what was said, by whom, and how to answer.

    `images` fetches the images of this turn's request (the newest `image_history` of its
    items); without it every image is sent as its text placeholder.
    """

    key: ConversationKey
    new_items: Sequence[HistoryItem]
    user_key: str
    model: str
    instructions: str
    record: bool = True
    regenerate: bool = False
    images: ImageSource | None = None
    options: AnswerOptions = field(default_factory=AnswerOptions)
    context_tokens: int | None = None
    """The model's context length, when known: the history sent is cut to fit it."""
    tools: Toolset | None = None


@dataclass(slots=True)
class TurnResult:
    """How a turn ended: the visible text and the final event (Completed, Incomplete or Failed)."""

    text: str
    final: FinalEvent
    stored: list[HistoryItem] = field(default_factory=list)
    saved: bool = True
    """False when the turn was to be stored and Redis failed: nothing to regenerate from."""

    @property
    def outcome(self) -> Literal["completed", "incomplete", "failed"]:
        """A one-word summary of the final event."""
        if isinstance(self.final, Completed):
            return "completed"
        if isinstance(self.final, Incomplete):
            return "incomplete"
        return "failed"

    @property
    def error(self) -> LLMError | None:
        """The error of a failed turn, else None."""
        return self.final.error if isinstance(self.final, Failed) else None


class ConversationService:
    """Runs turns of conversations one at a time each, against the Responses API and Redis."""

    def __init__(
        self,
        client: ResponsesClient,
        store: HistoryStore,
        lock: TurnLock,
        *,
        max_output_tokens: int,
        image_history: int = 3,
    ) -> None:
        self.client = client
        self.store = store
        self.lock = lock
        self.max_output_tokens = max_output_tokens
        self.image_history = image_history

    async def run_turn(
        self,
        turn: TurnRequest,
        on_event: Callable[[StreamEvent], None],
        *,
        stop: asyncio.Event | None = None,
    ) -> TurnResult:
        """Answer one turn, calling on_event for every event; `stop` ends it early, text kept."""
        async with self.lock.hold(turn.key):
            history = await self.store.load(turn.key)
            if turn.regenerate:
                history = _without_last_answer(history)
            if turn.record and turn.new_items:
                # Kept from the start, so a process that dies mid-answer has not lost the
                # question; the answer is appended when it ends (see _store).
                await self.store.append(turn.key, turn.new_items, trim=False)
            items = [*history, *turn.new_items]
            if not items:  # the API requires input; there is nothing to ask
                failed = Failed(NothingToAnswerError("the turn has no input"))
                on_event(failed)
                return TurnResult(text="", final=failed)
            budget = input_budget(turn.context_tokens, self.max_output_tokens, turn.instructions)
            items = fit_history(items, budget)
            refs = [ref for item in items for ref in item.images]
            images = await resolve_images(refs, turn.images, limit=self.image_history)

            def build(chosen: list[HistoryItem]) -> dict[str, Any]:
                return self.client.build_request(
                    chosen,
                    instructions=turn.instructions,
                    model=turn.model,
                    max_output_tokens=self.max_output_tokens,
                    user_key=turn.user_key,
                    conversation_key=str(turn.key),
                    images=images,
                    options=turn.options,
                )

            shorter = RetryShorter(self.client, items, build)
            collected = _Collected(on_event)
            source: EventSource = shorter if turn.tools is None else ToolLoop(shorter, turn.tools)
            try:
                await _stream_until_stopped(source, build(items), collected, stop)
            except Exception as exc:
                # Shown as a failure, not as "stopped"; the caller logs the traceback.
                collected(Failed(UnexpectedTurnError(repr(exc))))
                raise
            finally:
                # The final event goes on only after the store attempt, so that the reply's
                # final edit can say when the answer could not be kept.
                result = collected.result()
                try:
                    if turn.record:
                        await self._store_or_say_so(turn, result)
                finally:
                    collected.release(result.final)
            return result

    async def _store_or_say_so(self, turn: TurnRequest, result: TurnResult) -> None:
        """Store the turn's outcome; if Redis fails, mark the result unsaved with a notice."""
        try:
            result.stored = await _shielded(self._store(turn, result))
        except RedisError as exc:
            log.warning("Could not store the answer in %s: %s", turn.key, exc)
            result.saved = False
            final = result.final
            result.final = replace(final, notices=(*final.notices, NOT_SAVED_NOTICE))

    async def _store(self, turn: TurnRequest, result: TurnResult) -> list[HistoryItem]:
        """Keep the answer so far after the user's items stored at the start (a failed answer
        as incomplete); returns the turn's items."""
        final = result.final
        # An answer that failed before the API named its message gets an id now, so every later
        # request sends the same one.
        message_id = final.message_id or f"msg_{secrets.token_hex(12)}"
        answer = turn_items(
            (),
            result.text,
            status="completed" if isinstance(final, Completed) else "incomplete",
            message_id=message_id,
        )
        if turn.regenerate:
            if answer and not await self.store.replace_last_assistant(turn.key, answer[0]):
                await self.store.append(turn.key, answer)
            return answer
        await self.store.append(turn.key, answer)  # trims (also when no text came)
        return [*turn.new_items, *answer]


def _without_last_answer(history: list[HistoryItem]) -> list[HistoryItem]:
    """The history up to the last user item: what the last answer answered."""
    end = len(history)
    while end and history[end - 1].role == "assistant":
        end -= 1
    return history[:end]


class _Collected:
    """Passes events on and remembers the text and the final event of one stream; the final
    event itself is held back until `release`."""

    def __init__(self, on_event: Callable[[StreamEvent], None]) -> None:
        self.on_event = on_event
        self.parts: list[str] = []
        self.final: FinalEvent | None = None
        self.released = False

    def __call__(self, event: StreamEvent) -> None:
        if self.final is not None:
            return
        if isinstance(event, TextDelta):
            self.parts.append(event.text)
        elif isinstance(event, Completed | Incomplete | Failed):
            self.final = event
            return
        self.on_event(event)

    def release(self, final: FinalEvent) -> None:
        """Pass on the final event (as the store attempt left it), once."""
        if not self.released:
            self.released = True
            self.on_event(final)

    def result(self) -> TurnResult:
        """The outcome; a stream cut off without a final event counts as stopped."""
        if self.final is None:
            self(Incomplete(reason=STOPPED_REASON))
        assert self.final is not None
        return TurnResult(text="".join(self.parts), final=self.final)


async def _stream_until_stopped(
    client: EventSource,
    request: dict[str, Any],
    collected: _Collected,
    stop: asyncio.Event | None,
) -> None:
    """Feed the stream's events to `collected` until it ends or `stop` is set."""

    async def consume() -> None:
        async with contextlib.aclosing(client.stream(request)) as events:
            async for event in events:
                collected(event)

    reader = asyncio.ensure_future(consume())
    if stop is None:
        await reader
        return
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({reader, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (reader, stopper):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stopper
        with contextlib.suppress(asyncio.CancelledError):
            await reader  # re-raises what the reader failed with, if anything


async def _shielded(coro: Coroutine[object, object, list[HistoryItem]]) -> list[HistoryItem]:
    """Finish storing even if the turn's task is being cancelled (shutdown, stop)."""
    task = asyncio.ensure_future(coro)
    try:
        result: list[HistoryItem] = await asyncio.shield(task)
    except asyncio.CancelledError:
        result = await task
        raise
    return result
