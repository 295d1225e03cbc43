"""The live reply renderer: a streamed answer shown in chat messages that grow as it arrives.

`ReplyLayout` is the pure state machine: answer events in, the messages' contents out (where
the text is cut into parts, streaming marker, temporary fence closers, notices). `ReplyRenderer`
is its thin async driver: it asks the process-wide `EditPacer` for a slot, then sends or edits
through a `MessageSink` with the newest content (latest wins), one request at a time, so the
model's stream is never slowed by the chat service. The sink is implemented by the Discord
layer (and by tests with a recorder); nothing here knows about Discord.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit

from bot.core.errors import one_line_notice
from bot.core.events import (
    STOPPED_REASON,
    Citation,
    Completed,
    Failed,
    FinalEvent,
    Incomplete,
    ReasoningDelta,
    StatusLine,
    StreamEvent,
    TextDelta,
    Usage,
)
from bot.core.pacing import EditPacer, Sleep, SlotRequest
from bot.core.splitting import (
    MAX_FENCE_OVERHEAD,
    FenceState,
    FenceTracker,
    find_cut,
    leading_whitespace,
    message_content,
    rstrip_clusters,
)

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 1990
"""Characters per message: Discord allows 2,000; the margin is for safety."""
STREAMING_MARKER = " ▌"
"""Shown after the text while an answer streams; removed by the final edit."""
MIN_LIMIT = 100
MIN_ROOM = 40
"""Characters of text a message must have room for beside fences and marker."""
MAX_SOURCES = 5
MAX_SUMMARY_CHARS = 120
"""Visible characters of the reasoning summary line under the thinking status."""
MAX_SOURCE_TITLE_CHARS = 80
_MAX_SUMMARY_KEPT = 2000  # only the newest sentence is shown; older summary text is dropped
_MAX_CLOSER = 11  # a line break and the longest fence closer (ten backticks)
_SENTENCE_BREAK = re.compile(r"(?<=[.!?…])\s+|\n+")
_FORMATTING = re.compile(r"\*+|`+|~~|\|\||__")
_MARKDOWN_CHARS = re.compile(r"([\\*_~`|])")
_MODEL_VARIANT = re.compile(r"(:[\w.\-]+|-\d{4}-\d{2}-\d{2}|-\d{3,8})$")
REASONING_BUDGET_NOTICE = (
    "-# ✂️ The model spent its whole output budget on reasoning and wrote no answer: "
    "raise MAX_OUTPUT_TOKENS or lower the reasoning effort."
)


class MessageGone(Exception):  # noqa: N818  the name the rest of the project uses
    """The sink's message (or its channel) no longer exists; rendering must stop."""


class SinkError(Exception):
    """A send or edit failed for another reason; the renderer logs it and carries on."""


class Rerouted(SinkError):  # noqa: N818  a signal to the renderer, as MessageGone is
    """The request was not made: from now on the reply's messages in `old_bucket` are reached
    through `new_bucket` (an interaction token Discord rejected or that ran out, so the answer
    carries on in channel messages). The renderer makes the same request again at once, paced in
    the new bucket; it is not counted as a failure."""

    def __init__(self, reason: str, old_bucket: str, new_bucket: str) -> None:
        super().__init__(reason)
        self.old_bucket = old_bucket
        self.new_bucket = new_bucket


@dataclass(frozen=True, slots=True)
class SentMessage:
    """A message the sink created: its id and the rate-limit bucket its edits belong to."""

    id: str
    bucket: str


class MessageSink(Protocol):
    """Where a reply is shown; implemented by the Discord layer and by test recorders."""

    @property
    def send_bucket(self) -> str:
        """Rate-limit bucket of sends, e.g. "channel:123" or "interaction:<token>"."""

    async def send(self, content: str, *, first: bool) -> SentMessage:
        """Post a message; `first` replies to the trigger, later parts are sent silently."""
        ...

    async def edit(self, message: SentMessage, content: str) -> None:
        """Replace a message's content."""
        ...

    async def typing(self) -> None:
        """Show that an answer is coming (or nothing, where the platform already shows it)."""
        ...


@dataclass(frozen=True, slots=True)
class PlannedRequest:
    """The next request the layout wants: an edit of `message`, or a send when it is None."""

    message: SentMessage | None
    urgent: bool


@dataclass(frozen=True, slots=True)
class Operation:
    """A send (message is None) or an edit, with the content to show."""

    index: int
    content: str
    message: SentMessage | None
    first: bool
    final: bool


@dataclass(frozen=True, slots=True)
class RenderResult:
    """What a finished (or stopped) rendering left behind."""

    messages: list[SentMessage]
    text: str
    gone: bool = False
    gave_up: bool = False
    unused: list[SentMessage] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class FooterOptions:
    """What the lines under a finished answer show.

    `requested_model` is the model the turn asked for ("" never names the one that answered);
    `max_sources` caps the numbered sources; `usage` adds the tokens-and-cost line.
    """

    requested_model: str = ""
    max_sources: int = MAX_SOURCES
    usage: bool = False


@dataclass(slots=True)
class _Part:
    """One message of the reply: where its text starts in a fence, what it shows."""

    start: FenceState
    message: SentMessage | None = None
    shown: str | None = None
    final: str | None = None


def notices_for(event: FinalEvent) -> list[str]:
    """The one-line notices a final event adds below the answer: the bot's own (such as
    earlier messages left out), then what went wrong, if anything."""
    return [*event.notices, *_outcome_notices(event)]


def _outcome_notices(event: FinalEvent) -> list[str]:
    """The notice of a failed or unfinished answer; none for a completed one."""
    if isinstance(event, Failed):
        return [f"-# ⚠️ {event.error.user_message}"]
    if isinstance(event, Incomplete):
        if event.reason == "max_output_tokens":
            return ["-# ✂️ The answer was cut off: it reached the length limit."]
        if event.reason == STOPPED_REASON:  # Stop, /stop or shutdown: asked for, not a failure
            return ["-# ⏹️ Stopped."]
        return [f"-# ⚠️ The answer stopped early ({event.reason})."]
    return []


def _escape_markdown(text: str) -> str:
    """Text with Discord's inline markdown characters backslash-escaped."""
    return _MARKDOWN_CHARS.sub(r"\\\1", text)


def source_title(url: str, title: str) -> str:
    """A source's title made safe as masked-link text: one line, capped, no brackets or
    markdown that could break the link, no mention; the host name when there is no title."""
    if not title.strip() or "://" in title:
        title = urlsplit(url).hostname or url
    flat = title.replace("[", "(").replace("]", ")")
    return _escape_markdown(one_line_notice(flat, MAX_SOURCE_TITLE_CHARS))


def sources_lines(citations: dict[str, str], limit: int = MAX_SOURCES) -> list[str]:
    """Numbered subtext lines of the cited sources, `1. [title](<url>)` (links in <> so they
    show no preview), at most `limit`."""
    sources = list(citations.items())[: max(0, limit)]
    return [
        f"-# {number}. [{source_title(url, title)}](<{url}>)"
        for number, (url, title) in enumerate(sources, start=1)
    ]


def newest_summary_sentence(summary: str) -> str:
    """The newest complete sentence of a reasoning summary (the unfinished last one only when
    there is no other), with formatting marks and link brackets dropped; "" when none."""
    pieces = [piece for piece in _SENTENCE_BREAK.split(summary) if piece.strip()]
    finished = summary.rstrip() != summary or summary.rstrip().endswith((".", "!", "?", "…"))
    if len(pieces) > 1 and not finished:
        pieces = pieces[:-1]
    if not pieces:
        return ""
    return _FORMATTING.sub("", pieces[-1]).replace("[", "(").replace("]", ")").strip()


def summary_line(summary: str) -> str:
    """The newest summary sentence as one line for chat: at most MAX_SUMMARY_CHARS visible
    characters, markdown escaped, mentions neutralised; "" when there is nothing to show."""
    return _escape_markdown(one_line_notice(newest_summary_sentence(summary), MAX_SUMMARY_CHARS))


def thinking_status(seconds: int, summary: str) -> str:
    """The live status while the model reasons: seconds so far, and its newest summary line."""
    line = summary_line(summary)
    status = f"-# 💭 Thinking… {seconds} s"
    return f"{status}\n-# {line}" if line else status


def same_model(requested: str, answered: str) -> bool:
    """Whether two model ids name the same model, ignoring case, a `:variant` suffix and a
    date or version suffix (`openai/gpt-4o-mini` and `openai/gpt-4o-mini-2024-07-18`)."""

    def base(name: str) -> str:
        name = name.strip().lower()
        while True:
            shorter = _MODEL_VARIANT.sub("", name)
            if shorter == name:
                return name
            name = shorter

    return base(requested) == base(answered)


def answered_by_line(requested: str, event: FinalEvent) -> list[str]:
    """ "Answered by <model>" when a different model than the one asked for answered."""
    answered = event.model if isinstance(event, Completed | Incomplete) else None
    if not requested or not answered or same_model(requested, answered):
        return []
    return [f"-# Answered by {_escape_markdown(one_line_notice(answered, 100))}"]


def _count(number: int) -> str:
    """A token count with thousands separators."""
    return f"{number:,}"


def usage_line(usage: Usage) -> list[str]:
    """`1,234 in (1,000 cached) · 456 out (300 reasoning) · $0.0012`, the parts that are known."""
    if not (usage.input_tokens or usage.output_tokens or usage.cost is not None):
        return []
    tokens_in = f"{_count(usage.input_tokens)} in"
    if usage.cached_tokens:
        tokens_in += f" ({_count(usage.cached_tokens)} cached)"
    tokens_out = f"{_count(usage.output_tokens)} out"
    if usage.reasoning_tokens:
        tokens_out += f" ({_count(usage.reasoning_tokens)} reasoning)"
    parts = [tokens_in, tokens_out]
    if usage.cost is not None:
        parts.append("$" + (f"{usage.cost:.6f}".rstrip("0").rstrip(".") or "0"))
    return ["-# " + " · ".join(parts)]


class ReplyLayout:
    """Pure state machine: the answer's text laid out into message parts, and what to show next.

    Text is cut into parts as soon as it outgrows a message, independent of timing; a cut part
    gets a final content (no marker, open fence closed) and is shown once more with it before
    the next part is sent. `plan()` says which request is due, `take()` gives its content at the
    moment the request starts, `applied()` records that the sink did it.
    """

    def __init__(
        self,
        *,
        limit: int = DEFAULT_LIMIT,
        marker: str = STREAMING_MARKER,
        existing: Sequence[SentMessage] = (),
        show_sources: bool = True,
        footer: FooterOptions | None = None,
    ) -> None:
        if limit < MIN_LIMIT or len(marker) + MAX_FENCE_OVERHEAD + MIN_ROOM > limit:
            raise ValueError(f"message limit {limit} is too small for marker {marker!r}")
        self._limit = limit
        self._marker = marker
        self._existing = list(existing)
        self._show_sources = show_sources
        self._footer = footer or FooterOptions()
        self._now = 0.0
        self._thinking_since: float | None = None
        self._thought_seconds: int | None = None
        self._summary = ""
        self._parts = [_Part(None, message=self._existing[0] if self._existing else None)]
        self._tail = ""
        self._tail_started = False
        self._tracker = FenceTracker()
        self._answer: list[str] = []
        self._citations: dict[str, str] = {}
        self._finished = False
        self._cursor = 0
        self._requests = 0
        self._status = ""

    @property
    def finished(self) -> bool:
        """Whether the final event arrived."""
        return self._finished

    @property
    def complete(self) -> bool:
        """Whether the final event arrived and every part shows its final content."""
        return self._finished and self._cursor >= len(self._parts)

    @property
    def text(self) -> str:
        """The answer text as streamed, without notices."""
        return "".join(self._answer)

    @property
    def thinking(self) -> bool:
        """Whether the reply shows the thinking status (reasoning, no answer text yet)."""
        return (
            self._thinking_since is not None
            and self._thought_seconds is None
            and not self._tail_started
            and len(self._parts) == 1
        )

    def tick(self, now: float) -> None:
        """Set the time (seconds, any monotonic clock) the next contents are computed for."""
        self._now = now

    def next_change(self) -> float | None:
        """When the shown content changes by itself (the thinking seconds), or None."""
        if not self.thinking or self._finished:
            return None
        assert self._thinking_since is not None
        return self._thinking_since + math.floor(self._now - self._thinking_since) + 1

    def add_reasoning(self, event: ReasoningDelta) -> None:
        """Take reasoning: it starts the thinking status; only summary text is ever shown."""
        if self._finished or self._answer:
            return
        if self._thinking_since is None:
            self._thinking_since = self._now
        if event.summary:
            self._summary = (self._summary + event.text)[-_MAX_SUMMARY_KEPT:]

    def add_text(self, text: str) -> None:
        """Take a piece of answer text; the first one ends the thinking status."""
        if self._finished or not text:
            return
        self._end_thinking()
        self._answer.append(text)
        self._extend(text)

    def _end_thinking(self) -> None:
        """Note how long the model thought, once."""
        if self._thinking_since is not None and self._thought_seconds is None:
            self._thought_seconds = round(self._now - self._thinking_since)

    def add_citation(self, citation: Citation) -> None:
        """Remember a cited source."""
        self._citations.setdefault(citation.url, citation.title)

    def set_status(self, line: str) -> None:
        """Show a passing status line below the streaming text ("" takes it away)."""
        if self._finished:
            return
        self._status = line
        self._extend("")  # a longer reserve may need the text cut sooner

    def finish(self, event: FinalEvent) -> None:
        """Take the final event: close an open fence, add notices, fix the last part's content."""
        if self._finished:
            return
        self._status = ""
        if self._tail_started:
            self._tail = rstrip_clusters(self._tail)
            self._tracker = FenceTracker(self._parts[-1].start)
            self._tracker.feed(self._tail)
            if self._tracker.state is not None:
                self._extend("\n" + self._tracker.state.closer)
        self._end_thinking()
        notices = self._notices(event)
        if notices:
            self._extend("\n\n" + "\n".join(notices))
        self._finished = True
        content = self._current_content(final=True)
        if content is None:
            self._parts.pop()
        else:
            self._parts[-1].final = content
        self._advance()

    def _notices(self, event: FinalEvent) -> list[str]:
        """The subtext lines under a finished answer: what went wrong, the sources, how long it
        thought, the model that answered when another one did, and the usage."""
        usage = event.usage if isinstance(event, Completed | Incomplete) else Usage()
        notices = notices_for(event)
        if not self.text.strip():
            if self._budget_spent_thinking(event, usage):
                notices = [*event.notices, REASONING_BUDGET_NOTICE]
            elif not _outcome_notices(event):
                notices.append("-# The model returned an empty answer.")
        if self._show_sources:
            notices += sources_lines(self._citations, self._footer.max_sources)
        if self._thought_seconds:  # a second or more; a blink of thought is not worth a line
            notices.append(f"-# 💭 Thought for {self._thought_seconds} s")
        notices += answered_by_line(self._footer.requested_model, event)
        if self._footer.usage:
            notices += usage_line(usage)
        return notices

    def _budget_spent_thinking(self, event: FinalEvent, usage: Usage) -> bool:
        """Whether the output budget ran out while the model was still reasoning."""
        cut = isinstance(event, Incomplete) and event.reason == "max_output_tokens"
        return cut and (self._thinking_since is not None or usage.reasoning_tokens > 0)

    def plan(self) -> PlannedRequest | None:
        """The request due now, or None while there is nothing new to show."""
        if self._cursor >= len(self._parts):
            return None
        part = self._parts[self._cursor]
        content = self._content_of(self._cursor)
        if content is None or content == part.shown:
            return None
        last = self._finished and self._cursor == len(self._parts) - 1
        return PlannedRequest(part.message, urgent=self._requests == 0 or last)

    def take(self) -> Operation | None:
        """The due request with the newest content, as it should start now."""
        if self.plan() is None:
            return None
        part = self._parts[self._cursor]
        content = self._content_of(self._cursor)
        assert content is not None
        final = part.final is not None
        return Operation(self._cursor, content, part.message, self._cursor == 0, final)

    def applied(self, operation: Operation, sent: SentMessage | None = None) -> None:
        """Record that the sink did `operation` (`sent` is the new message of a send)."""
        part = self._parts[operation.index]
        if sent is not None:
            part.message = sent
        part.shown = operation.content
        self._requests += 1
        self._advance()

    def move_bucket(self, old: str, new: str) -> None:
        """Reach the messages of bucket `old` through bucket `new` from now on."""
        for part in self._parts:
            if part.message is not None and part.message.bucket == old:
                part.message = SentMessage(id=part.message.id, bucket=new)
        self._existing = [
            SentMessage(id=m.id, bucket=new) if m.bucket == old else m for m in self._existing
        ]

    def messages(self) -> list[SentMessage]:
        """The messages that show the reply, in order."""
        return [part.message for part in self._parts if part.message is not None]

    def unused(self) -> list[SentMessage]:
        """Existing messages the reply did not need (a shorter regenerated answer)."""
        return self._existing[len(self._parts) :] if self._finished else []

    def _content_of(self, index: int) -> str | None:
        """What part `index` should show now."""
        part = self._parts[index]
        if part.final is not None:
            return part.final
        content = self._current_content(final=False)
        if self._status and index == len(self._parts) - 1:
            return f"{content}\n{self._status}" if content else self._status
        return content

    def _current_content(self, *, final: bool) -> str | None:
        """The last part's content from its text so far, or None while it is blank."""
        body = rstrip_clusters(self._tail) if self._tail_started else ""
        if not body:
            if self.thinking and not final:
                assert self._thinking_since is not None
                seconds = max(0, math.floor(self._now - self._thinking_since))
                return thinking_status(seconds, self._summary)
            return None
        end = self._tracker.state
        return message_content(body, self._parts[-1].start, end, "" if final else self._marker)

    def _extend(self, text: str) -> None:
        """Append displayed text to the last part, cutting parts off while it is too long."""
        self._tail += text
        if self._tail_started:
            self._tracker.feed(text)
        while True:
            if not self._tail_started and not self._start_tail():
                return
            if not self._too_long():
                return
            self._cut()

    def _start_tail(self) -> bool:
        """Drop the whitespace a part starts with; False while nothing else arrived."""
        start = self._parts[-1].start
        skip = leading_whitespace(self._tail, in_fence=start is not None)
        if skip is None:
            return False
        self._tail = self._tail[skip:]
        self._tail_started = True
        self._tracker = FenceTracker(start)
        self._tracker.feed(self._tail)
        return True

    def _too_long(self) -> bool:
        """Whether the last part's streaming content would exceed the limit."""
        start = self._parts[-1].start
        opener = len(start.opener) + 1 if start else 0
        reserve = len(self._marker) + (len(self._status) + 1 if self._status else 0)
        if opener + len(self._tail) + reserve + _MAX_CLOSER <= self._limit:
            return False
        body = rstrip_clusters(self._tail)
        content = message_content(body, start, self._tracker.state, self._marker)
        return len(content) + reserve - len(self._marker) > self._limit

    def _cut(self) -> None:
        """End the last part at the best boundary and start the next one with the rest."""
        part = self._parts[-1]
        reserve = len(self._marker) + (len(self._status) + 1 if self._status else 0)
        cut = find_cut(self._tail, part.start, self._limit - reserve - 1)
        part.final = message_content(cut.body, part.start, cut.end)
        index = len(self._parts)
        existing = self._existing[index] if index < len(self._existing) else None
        self._parts.append(_Part(cut.end, message=existing))
        self._tail = self._tail[cut.rest :]
        self._tail_started = False
        self._advance()

    def _advance(self) -> None:
        """Move past the parts that already show their final content."""
        while self._cursor < len(self._parts):
            part = self._parts[self._cursor]
            if part.final is None or part.shown != part.final:
                return
            self._cursor += 1


class ReplyRenderer:
    """Drives a `ReplyLayout` into a `MessageSink`, paced by the process-wide `EditPacer`.

    `feed()` never blocks; `run()` sends and edits until the final event's text is fully shown,
    the message is deleted (then `on_gone` is called, e.g. to cancel the generation), or the
    sink failed `max_failures` times in a row.
    """

    def __init__(
        self,
        sink: MessageSink,
        pacer: EditPacer,
        *,
        on_gone: Callable[[], None] | None = None,
        marker: str = STREAMING_MARKER,
        typing_every: float = 8.0,
        limit: int = DEFAULT_LIMIT,
        existing: Sequence[SentMessage] = (),
        show_sources: bool = True,
        footer: FooterOptions | None = None,
        max_failures: int = 3,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._sink = sink
        self._pacer = pacer
        self._on_gone = on_gone
        self._typing_every = typing_every if not existing else 0.0
        self._layout = ReplyLayout(
            limit=limit,
            marker=marker,
            existing=existing,
            show_sources=show_sources,
            footer=footer,
        )
        self._max_failures = max_failures
        self._sleep = sleep
        self._clock = clock
        self._wake = asyncio.Event()
        self._slot: SlotRequest | None = None
        self._typing: asyncio.Task[None] | None = None
        self._stopped = False
        self._gone = False
        self._gave_up = False

    def feed(self, event: StreamEvent) -> None:
        """Take one event of the answer stream; synchronous and cheap."""
        if self._stopped:
            return
        self._layout.tick(self._now())
        if isinstance(event, TextDelta):
            self._layout.add_text(event.text)
        elif isinstance(event, ReasoningDelta):
            self._layout.add_reasoning(event)
        elif isinstance(event, Citation):
            self._layout.add_citation(event)
        elif isinstance(event, StatusLine):
            self._layout.set_status(event.text)
        elif isinstance(event, Completed | Incomplete | Failed):
            self._layout.finish(event)
        self._wake.set()
        if self._slot is not None:
            planned = self._layout.plan()
            if planned is not None and planned.urgent:
                self._slot.make_urgent()

    async def run(self) -> RenderResult:
        """Show the reply until it is complete or must stop; returns what was shown."""
        if self._typing_every > 0:
            self._typing = asyncio.create_task(self._keep_typing())
        try:
            await self._drive()
        finally:
            await self._stop_typing()
        return RenderResult(
            messages=self._layout.messages(),
            text=self._layout.text,
            gone=self._gone,
            gave_up=self._gave_up,
            unused=self._layout.unused(),
        )

    async def _drive(self) -> None:
        """Make the due requests one at a time until the layout is complete."""
        failures = reroutes = 0
        while not self._layout.complete:
            self._layout.tick(self._now())
            planned = self._layout.plan()
            if planned is None:
                await self._wait_for_news()
                continue
            await self._acquire(planned)
            self._layout.tick(self._now())
            operation = self._layout.take()
            if operation is None:
                continue
            await self._stop_typing()
            try:
                await self._perform(operation)
            except MessageGone:
                self._stop(gone=True)
                return
            except Rerouted as moved:
                self._layout.move_bucket(moved.old_bucket, moved.new_bucket)
                reroutes += 1
                if reroutes <= self._max_failures:
                    continue  # the same request again, at once, paced in its new bucket
                log.warning("reply request rerouted %d times in a row: %s", reroutes, moved)
                self._stop(gone=False)
                return
            except SinkError as exc:
                failures += 1
                log.warning("reply request failed (%d in a row): %s", failures, exc)
                if failures >= self._max_failures:
                    self._stop(gone=False)
                    return
                continue
            failures = reroutes = 0

    def _now(self) -> float:
        """The renderer's clock: the injected one, else the event loop's."""
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    async def _wait_for_news(self) -> None:
        """Wait for the next event, or for the moment the content changes by itself (the
        thinking status counts seconds), whichever comes first."""
        self._wake.clear()
        change = self._layout.next_change()
        if change is None:
            await self._wake.wait()
            return
        delay = change - self._now()
        if delay <= 0:
            return
        waits = {
            asyncio.ensure_future(self._wake.wait()),
            asyncio.ensure_future(self._sleep(delay)),
        }
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
            await asyncio.wait(waits)

    async def _acquire(self, planned: PlannedRequest) -> None:
        """Wait for a pacer slot in the bucket of the planned request."""
        bucket = planned.message.bucket if planned.message else self._sink.send_bucket
        self._slot = self._pacer.request(bucket, urgent=planned.urgent)
        try:
            await self._slot.wait()
        finally:
            self._slot = None

    async def _perform(self, operation: Operation) -> None:
        """Apply one operation through the sink and record it."""
        if operation.message is None:
            sent = await self._sink.send(operation.content, first=operation.first)
            self._layout.applied(operation, sent)
        else:
            await self._sink.edit(operation.message, operation.content)
            self._layout.applied(operation)

    def _stop(self, *, gone: bool) -> None:
        """Stop for good: the message is gone (cancel the generation) or the sink keeps failing."""
        self._stopped = True
        if gone:
            self._gone = True
            log.info("reply message is gone; stopping the answer")
            if self._on_gone is not None:
                self._on_gone()
        else:
            self._gave_up = True
            log.error("giving up on this reply after %d failed requests", self._max_failures)

    async def _keep_typing(self) -> None:
        """Show typing every `typing_every` seconds until the first message is sent."""
        bucket = f"{self._sink.send_bucket}:typing"
        while True:
            await self._pacer.acquire(bucket, urgent=True, background=True)
            try:
                await self._sink.typing()
            except (MessageGone, SinkError) as exc:
                log.info("typing indicator failed: %s", exc)
                return
            await self._sleep(self._typing_every)

    async def _stop_typing(self) -> None:
        """End the typing loop, if it runs."""
        task, self._typing = self._typing, None
        if task is None:
            return
        task.cancel()
        await asyncio.wait({task})
