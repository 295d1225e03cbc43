"""What the core reports about its work to whoever watches it (metrics, logs), through narrow
protocols with do-nothing defaults, so the core depends on no metrics library.

Also the log context of a turn: `log_context(...)` sets fields (guild, channel, turn id, model)
that every log record made inside it carries, in this task and in the tasks it starts.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from types import MappingProxyType
from typing import Protocol

from bot.core.events import FinalEvent, StreamEvent
from bot.core.renderer import MessageSink, SentMessage

CONTENT_LOG = logging.getLogger("bot.content")
"""Where message content is logged; silent unless LOG_CONTENT=true (see bot/ops/logs.py)."""

_LOG_CONTEXT: ContextVar[Mapping[str, str]] = ContextVar(
    "bot_log_context", default=MappingProxyType({})
)


class AnswerWatch(Protocol):
    """Watches one answer from its start to its end."""

    def event(self, event: StreamEvent) -> None:
        """One event of the model's stream, as it arrives."""

    def shown(self) -> None:
        """A message of the answer was sent or edited (the first call marks visible text)."""

    def finished(self, final: FinalEvent, *, crashed: bool) -> None:
        """The answer ended with `final`; `crashed` when an unexpected exception ended it."""


class Observer(Protocol):
    """Watches the bot's answers and its pacing."""

    def answer_started(self, frontend: str) -> AnswerWatch:
        """An answer starts for a front-end ("mention", "ask", "chat", "regenerate", ...)."""
        ...

    def pacer_waited(self, seconds: float) -> None:
        """A request waited this long from asking the pacer for a slot to getting it."""


class _NoWatch:
    """An answer watch that ignores everything."""

    def event(self, event: StreamEvent) -> None:
        """Ignore the event."""

    def shown(self) -> None:
        """Ignore it."""

    def finished(self, final: FinalEvent, *, crashed: bool) -> None:
        """Ignore the end."""


class NoObserver:
    """An observer that ignores everything (the default: tests and the terminal)."""

    def answer_started(self, frontend: str) -> AnswerWatch:
        """A watch that ignores the answer."""
        return _NoWatch()

    def pacer_waited(self, seconds: float) -> None:
        """Ignore the wait."""


NO_OBSERVER: Observer = NoObserver()


class WatchedSink:
    """A message sink that tells an answer's watch when its messages are sent or edited."""

    def __init__(self, sink: MessageSink, watch: AnswerWatch) -> None:
        self._sink = sink
        self._watch = watch

    @property
    def send_bucket(self) -> str:
        """The wrapped sink's send bucket."""
        return self._sink.send_bucket

    async def send(self, content: str, *, first: bool) -> SentMessage:
        """Send through the wrapped sink, then report it."""
        sent = await self._sink.send(content, first=first)
        self._watch.shown()
        return sent

    async def edit(self, message: SentMessage, content: str) -> None:
        """Edit through the wrapped sink, then report it."""
        await self._sink.edit(message, content)
        self._watch.shown()

    async def typing(self) -> None:
        """Show typing through the wrapped sink."""
        await self._sink.typing()


def new_turn_id() -> str:
    """A short random id that ties one turn's log lines together."""
    return secrets.token_hex(4)


@contextlib.contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Add fields (None ones skipped) to every log record made inside the block."""
    extra = {name: str(value) for name, value in fields.items() if value is not None}
    token = _LOG_CONTEXT.set({**_LOG_CONTEXT.get(), **extra})
    try:
        yield
    finally:
        _LOG_CONTEXT.reset(token)


def add_log_context(**fields: object) -> None:
    """Add fields to the current context until its `log_context` block ends."""
    extra = {name: str(value) for name, value in fields.items() if value is not None}
    _LOG_CONTEXT.set({**_LOG_CONTEXT.get(), **extra})


def current_log_context() -> Mapping[str, str]:
    """The log fields in force here."""
    return _LOG_CONTEXT.get()
