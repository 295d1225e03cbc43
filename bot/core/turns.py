"""Running answers: a queue per conversation, the renderer and the model stream side by side, a
registry of what is streaming so Stop can find it, and the latest answer remembered for
Regenerate. Discord-free: the front-end gives a sink and, for answers with buttons, a finisher."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from redis.exceptions import RedisError

from bot.core.control import RunningAnswers
from bot.core.conversation import (
    ConversationService,
    TurnRequest,
    TurnResult,
    UnexpectedTurnError,
)
from bot.core.errors import StorageError
from bot.core.events import Completed, Failed, HistoryItem, Incomplete, StreamEvent, Usage
from bot.core.images import ImageSource
from bot.core.inflight import InFlightAnswers
from bot.core.keys import ConversationKey
from bot.core.labels import SPEAKER_NOTE
from bot.core.last_answers import LastAnswers
from bot.core.observe import (
    CONTENT_LOG,
    NO_OBSERVER,
    Observer,
    WatchedSink,
    add_log_context,
    log_context,
    new_turn_id,
)
from bot.core.pacing import EditPacer
from bot.core.prefs import Effective, Preferences, PrefName, answer_options, usage_footer
from bot.core.renderer import (
    FooterOptions,
    MessageSink,
    RenderResult,
    ReplyRenderer,
    SentMessage,
)
from bot.core.tools.context import ToolContext
from bot.core.tools.registry import TurnTools
from bot.core.turnlock import TurnLockTimeout

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[None]]
RecordUsage = Callable[[str, str, Usage], Awaitable[None]]
"""Counts a finished answer's usage: (guild, member id, usage); `UsageLimits.record`."""
ContextOf = Callable[[str], Awaitable[int | None]]
"""A model's context length in tokens, None when unknown; `ModelCatalog.context_length`."""
Choices = Mapping[PrefName, Effective]
SHUTDOWN_GRACE_SECONDS = 10.0


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
    crashed: bool = False
    """It failed with an unexpected exception (logged): no Regenerate, only its notice."""

    @property
    def regenerable(self) -> bool:
        """Whether Regenerate may go on it: it ran normally and what it said was stored."""
        return not self.crashed and self.turn.saved


@dataclass(frozen=True, slots=True)
class Finished:
    """An answer whose buttons are to be finished, and the answer it follows as the latest."""

    key: ConversationKey
    asker_id: int
    answer: Answer
    previous: list[str] | None = None

    @property
    def shown(self) -> list[SentMessage]:
        """The messages that show the answer; empty when it never showed or its reply is gone."""
        render = self.answer.render
        return [] if render.gone else render.messages


Finish = Callable[[Finished], Awaitable[None]]
"""Puts the final buttons on an answer (a front-end's business: the core knows no buttons)."""


class TurnRunner:
    """Queues turns per conversation (FIFO, bounded) and runs each with a live renderer."""

    def __init__(
        self,
        service: ConversationService,
        prefs: Preferences,
        pacer: EditPacer,
        last_answers: LastAnswers,
        *,
        queue_depth: int,
        user_prefix: str = "discord",
        web_max_results: int = 5,
        inflight: InFlightAnswers | None = None,
        observer: Observer = NO_OBSERVER,
        tools: TurnTools | None = None,
        record_usage: RecordUsage | None = None,
        context_of: ContextOf | None = None,
        running: RunningAnswers[Running] | None = None,
    ) -> None:
        """`running` records the answers streaming here (in Redis too, for other processes)."""
        self._service = service
        self._inflight = inflight
        self._record_usage = record_usage
        self._context_of = context_of
        self._prefs = prefs
        self._pacer = pacer
        self._last_answers = last_answers
        self._queue_depth = queue_depth
        self._user_prefix = user_prefix
        self._web_max_results = web_max_results
        self._observer = observer
        self._tools = tools
        self._queues: dict[ConversationKey, deque[Job]] = {}
        self._workers: dict[ConversationKey, asyncio.Task[None]] = {}
        self._running = running if running is not None else RunningAnswers[Running]()

    def submit(self, key: ConversationKey, job: Job) -> bool:
        """Queue a job for a conversation; False when QUEUE_DEPTH jobs already wait."""
        queue = self._queues.setdefault(key, deque())
        if len(queue) >= self._queue_depth + 1:
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

    @property
    def active(self) -> int:
        """How many answers stream now."""
        return len(self._running)

    @property
    def queued(self) -> int:
        """How many jobs wait behind the one running in their conversation."""
        return sum(max(0, len(queue) - 1) for queue in self._queues.values())

    async def run(
        self,
        key: ConversationKey,
        new_items: Sequence[HistoryItem],
        *,
        asker_id: int,
        sink: MessageSink,
        finish: Finish | None = None,
        record: bool = True,
        existing: Sequence[SentMessage] = (),
        frontend: str = "other",
        images: ImageSource | None = None,
        context: ToolContext | None = None,
        web: bool | None = None,
    ) -> Answer:
        """Stream one answer into the sink, store the turn, then finish its buttons (if any).

        `web` turns web search on or off for this answer only (None: the choice in force).
        Before `finish` runs, the answer is remembered as the conversation's latest, so a quick
        press of its Regenerate finds it already the latest; the stored answer learns which
        messages show it (deleting one takes it out of the history), and its usage is counted
        for the asker. A stored answer is recorded as in flight until its buttons are finished,
        so a start after a crash can finish its reply.
        `frontend` names the front-end in metrics; `images` fetches the images the request sends
        (see TurnRequest); `context` (where the turn happens and who asks) lets the turn use the
        tools that are on there."""
        with log_context(guild=key.guild, channel=key.channel, turn=new_turn_id()):
            CONTENT_LOG.info("Asked: %s", " | ".join(item.text for item in new_items))
            inflight = None
            if record and self._inflight is not None:
                inflight = await self._inflight.begin(
                    key,
                    asker_id=asker_id,
                    sink=sink.send_bucket.partition(":")[0],
                    question_ref=new_items[-1].ref if new_items else "",
                    existing=[m.id for m in existing],
                )
            try:
                answer = await self._answer(
                    key,
                    new_items,
                    asker_id=asker_id,
                    sink=inflight.tracking(sink) if inflight else sink,
                    record=record,
                    existing=existing,
                    frontend=frontend,
                    images=images,
                    context=context,
                    web=web,
                )
                await self._account(key, asker_id, answer)
                if finish is not None:
                    regenerable = answer.regenerable
                    previous = await self._remember(key, answer.render) if regenerable else None
                    await finish(Finished(key, asker_id, answer, previous))
                return answer
            finally:
                if inflight is not None:
                    await inflight.end()

    async def _account(self, key: ConversationKey, asker_id: int, answer: Answer) -> None:
        """Count the answer's usage and note the messages that show the stored answer."""
        final = answer.turn.final
        stored = answer.turn.stored
        render = answer.render
        try:
            if self._record_usage is not None and isinstance(final, Completed | Incomplete):
                await self._record_usage(key.guild, str(asker_id), final.usage)
            if stored and stored[-1].role == "assistant" and render.messages and not render.gone:
                ids = [message.id for message in render.messages]
                await self._service.store.set_answer_refs(key, stored[-1].item_id, ids)
        except RedisError as exc:
            log.warning("Could not count or note the answer in %s: %s", key, exc)

    async def _answer(
        self,
        key: ConversationKey,
        new_items: Sequence[HistoryItem],
        *,
        asker_id: int,
        sink: MessageSink,
        record: bool,
        existing: Sequence[SentMessage],
        frontend: str,
        images: ImageSource | None = None,
        context: ToolContext | None = None,
        web: bool | None,
    ) -> Answer:
        """Stream one answer into the sink while the model writes it; store the turn.

        The choices in force are read first, since the reply's footer depends on them. If Redis
        fails (down, restarting, or the turn lock cannot be had), the answer ends with a
        one-line notice instead of failing silently."""
        running = Running(key=key, asker_id=asker_id)
        choices: Choices | Exception
        try:
            choices = await self._prefs.effective(key)
        except Exception as exc:  # noqa: BLE001 -- raised again in _run_turn, which tells it
            choices = exc
        watch = self._observer.answer_started(frontend)
        watched = WatchedSink(sink, watch)
        renderer = ReplyRenderer(
            watched,
            self._pacer,
            on_gone=running.stop.set,
            existing=existing,
            footer=self._footer(choices),
        )
        self._running[key] = running
        render_task = asyncio.create_task(renderer.run())
        feed = _FinalSeen(renderer.feed, watch.event)
        crashed = False
        try:
            result = await self._run_turn(
                key,
                choices,
                web=web,
                new_items=new_items,
                asker_id=asker_id,
                running=running,
                feed=feed,
                record=record,
                regenerate=bool(existing),
                images=images,
                context=context,
            )
        except Exception:
            # Never silent: the reply ends with a notice (and loses Stop), the log has why.
            log.exception("An answer in %s failed unexpectedly", key)
            crashed = True
            failed = Failed(UnexpectedTurnError())
            if not feed.final_seen:
                feed(failed)
            result = TurnResult(text="", final=failed)
        except BaseException:
            render_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await render_task
            raise
        finally:
            self._running.pop(key, None)
        _log_usage(key, result)
        watch.finished(result.final, crashed=crashed)
        CONTENT_LOG.info("Answered: %s", result.text)
        return Answer(turn=result, render=await render_task, crashed=crashed)

    def _footer(self, choices: Choices | Exception) -> FooterOptions:
        """What the lines under the answer show, from the choices in force."""
        if isinstance(choices, Exception):
            return FooterOptions(max_sources=self._web_max_results)
        return FooterOptions(
            requested_model=choices["model"].value,
            max_sources=self._web_max_results,
            usage=usage_footer(choices),
        )

    async def _run_turn(
        self,
        key: ConversationKey,
        choices: Choices | Exception,
        *,
        web: bool | None,
        new_items: Sequence[HistoryItem],
        asker_id: int,
        running: Running,
        feed: Callable[[StreamEvent], None],
        record: bool,
        regenerate: bool,
        images: ImageSource | None = None,
        context: ToolContext | None = None,
    ) -> TurnResult:
        """Run the turn with the choices in force (`web` overriding the web choice when given);
        a storage failure, also in reading the choices, becomes a notice."""
        try:
            if isinstance(choices, Exception):
                raise choices
            model = choices["model"].value
            add_log_context(model=model)
            context_tokens = await self._context_of(model) if self._context_of else None
            turn = TurnRequest(
                key=key,
                new_items=new_items,
                user_key=f"{self._user_prefix}:{asker_id}",
                model=model,
                instructions=_instructions(choices["system"].value),
                record=record,
                regenerate=regenerate,
                context_tokens=context_tokens,
                options=answer_options(choices, web_max_results=self._web_max_results, web=web),
                images=images,
                tools=await self._tools.for_turn(context) if self._tools and context else None,
            )
            return await self._service.run_turn(turn, feed, stop=running.stop)
        except (RedisError, TurnLockTimeout) as exc:
            log.warning("Conversation store failed in %s: %s", key, exc)
            failed = Failed(StorageError(str(exc)))
            feed(failed)
            return TurnResult(text="", final=failed, saved=False)

    async def _remember(self, key: ConversationKey, render: RenderResult) -> list[str] | None:
        """Record the answer's messages as the latest; the ones it follows, if any."""
        if render.gone or not render.messages:
            return None
        try:
            previous = await self._last_answers.get(key)
            await self._last_answers.remember(key, [m.id for m in render.messages])
        except RedisError as exc:
            log.warning("Could not remember the latest answer in %s: %s", key, exc)
            return None
        return previous

    async def shutdown(self, *, grace_seconds: float = SHUTDOWN_GRACE_SECONDS) -> None:
        """Stop every streaming answer; their text so far is kept."""
        for running in list(self._running.values()):
            running.stop.set()
        workers = list(self._workers.values())
        if workers:
            await asyncio.wait(workers, timeout=grace_seconds)


class _FinalSeen:
    """Passes events to the renderer and notes whether a final event went by."""

    def __init__(
        self, feed: Callable[[StreamEvent], None], watch: Callable[[StreamEvent], None]
    ) -> None:
        self._feed = feed
        self._watch = watch
        self.final_seen = False

    def __call__(self, event: StreamEvent) -> None:
        if isinstance(event, Completed | Incomplete | Failed):
            self.final_seen = True
        self._watch(event)
        self._feed(event)


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


def _instructions(system_prompt: str) -> str:
    """The system prompt plus the note on how speakers are marked."""
    return f"{system_prompt.strip()}\n\n{SPEAKER_NOTE}"
