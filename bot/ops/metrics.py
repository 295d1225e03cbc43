"""The bot's Prometheus metrics: answers, timings, tokens and cost, Discord requests, pacing,
Redis errors and tool calls, in a registry of their own (never the global one).

`BotMetrics` implements the core's `Observer`, so the core reports to it without knowing
Prometheus; Discord requests are counted by an aiohttp trace on discord.py's HTTP session, Redis
errors by wrapping the client's command and pipeline entry points.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from redis.exceptions import RedisError

from bot.core.events import (
    STOPPED_REASON,
    Completed,
    Failed,
    FinalEvent,
    Incomplete,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
)
from bot.core.observe import AnswerWatch
from bot.core.redis_client import RedisClient

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
"""The Prometheus text format every scraper understands."""
PREFIX = "llmbot"
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 30.0, 60.0)
STREAM_BUCKETS = (1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
PACER_BUCKETS = (0.005, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
_API_PREFIX = re.compile(r"^.*?/api(?:/v\d+)?(?=/)")
_TOKEN_AFTER = {"webhooks", "interactions"}


class BotMetrics:
    """Every metric of one bot process, and the observer the core reports to."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.registry = CollectorRegistry()
        self._clock = clock
        reg = self.registry
        self.answers = Counter(
            f"{PREFIX}_answers",
            "Answers by front-end and outcome.",
            ["frontend", "outcome"],
            registry=reg,
        )
        self.first_token = Histogram(
            f"{PREFIX}_first_token_seconds",
            "From an answer's start to the model's first token (text or reasoning).",
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.first_text = Histogram(
            f"{PREFIX}_first_visible_text_seconds",
            "From an answer's start to its first message shown in Discord.",
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.stream = Histogram(
            f"{PREFIX}_stream_seconds",
            "From an answer's start to the end of the model's stream.",
            buckets=STREAM_BUCKETS,
            registry=reg,
        )
        self.tokens = Counter(
            f"{PREFIX}_tokens",
            "Tokens of finished answers: input, cached (part of input), output, reasoning.",
            ["kind"],
            registry=reg,
        )
        self.cost = Counter(
            f"{PREFIX}_cost_usd", "OpenRouter's cost of the answers, in USD.", registry=reg
        )
        self.discord_requests = Counter(
            f"{PREFIX}_discord_requests",
            "HTTP requests to Discord by kind (method and route) and status.",
            ["kind", "status"],
            registry=reg,
        )
        self.discord_429 = Counter(
            f"{PREFIX}_discord_429",
            "429 answers received from Discord, by kind and X-RateLimit-Scope.",
            ["kind", "scope"],
            registry=reg,
        )
        self.pacer_wait = Histogram(
            f"{PREFIX}_pacer_wait_seconds",
            "How long a Discord request waited for its pacer slot.",
            buckets=PACER_BUCKETS,
            registry=reg,
        )
        self.active = Gauge(f"{PREFIX}_active_answers", "Answers streaming now.", registry=reg)
        self.queued = Gauge(
            f"{PREFIX}_queued_messages", "Messages waiting behind a running answer.", registry=reg
        )
        self.redis_errors = Counter(
            f"{PREFIX}_redis_errors",
            "Failed Redis commands, by error type.",
            ["error"],
            registry=reg,
        )
        self.tool_calls = Counter(
            f"{PREFIX}_tool_calls",
            "Tool calls the model made, by tool and outcome.",
            ["tool", "outcome"],
            registry=reg,
        )

    def render(self) -> bytes:
        """The metrics in Prometheus text format."""
        return generate_latest(self.registry)

    # --- the core's Observer --------------------------------------------------------------

    def answer_started(self, frontend: str) -> AnswerWatch:
        """A watch that times one answer and counts how it ended."""
        return _AnswerTimer(self, frontend, self._clock)

    def pacer_waited(self, seconds: float) -> None:
        """Record one request's wait for its pacer slot."""
        self.pacer_wait.observe(max(0.0, seconds))

    # --- sources outside the core ---------------------------------------------------------

    def watch_turns(self, active: Callable[[], int], queued: Callable[[], int]) -> None:
        """Read the active and queued gauges from these callables at every scrape."""
        self.active.set_function(lambda: float(active()))
        self.queued.set_function(lambda: float(queued()))

    def discord_trace(self) -> aiohttp.TraceConfig:
        """An aiohttp trace that counts every request discord.py makes, and its 429s."""
        trace = aiohttp.TraceConfig()
        trace.on_request_end.append(self._request_end)
        trace.on_request_exception.append(self._request_failed)
        return trace

    async def _request_end(
        self, _session: aiohttp.ClientSession, _ctx: SimpleNamespace, params: Any
    ) -> None:
        """Count one answered request."""
        kind = request_kind(params.method, params.url.path)
        status = params.response.status
        self.discord_requests.labels(kind, str(status)).inc()
        if status == 429:
            scope = params.response.headers.get("X-RateLimit-Scope", "unknown")
            self.discord_429.labels(kind, scope).inc()

    async def _request_failed(
        self, _session: aiohttp.ClientSession, _ctx: SimpleNamespace, params: Any
    ) -> None:
        """Count one request that got no answer (connection error, timeout)."""
        kind = request_kind(params.method, params.url.path)
        self.discord_requests.labels(kind, "error").inc()

    def watch_redis(self, client: RedisClient) -> None:
        """Count every Redis command or pipeline of this client that fails."""
        client.execute_command = self._counting(client.execute_command)  # type: ignore[method-assign,assignment]
        make_pipeline = client.pipeline

        @functools.wraps(make_pipeline)
        def pipeline(*args: Any, **kwargs: Any) -> Any:
            pipe = make_pipeline(*args, **kwargs)
            pipe.execute = self._counting(pipe.execute)  # type: ignore[method-assign,assignment]
            return pipe

        client.pipeline = pipeline  # type: ignore[method-assign]

    def _counting(self, call: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        """`call`, counting the Redis errors it raises."""

        @functools.wraps(call)
        async def counted(*args: Any, **kwargs: Any) -> Any:
            try:
                return await call(*args, **kwargs)
            except (RedisError, OSError) as exc:
                self.redis_errors.labels(type(exc).__name__).inc()
                raise

        return counted


def request_kind(method: str, path: str) -> str:
    """A Discord request as a bounded label: method and route, ids and tokens replaced."""
    path = _API_PREFIX.sub("", path)
    parts = path.split("/")
    for index, part in enumerate(parts):
        before = parts[index - 1] if index else ""
        if part.isdigit():
            parts[index] = "{id}"
        elif index >= 2 and parts[index - 2] in _TOKEN_AFTER and before == "{id}":
            parts[index] = "{token}"
        elif before == "reactions":
            parts[index] = "{emoji}"
    return f"{method} {'/'.join(parts) or '/'}"


def outcome_of(final: FinalEvent, *, crashed: bool) -> str:
    """One word for how an answer ended."""
    if crashed:
        return "crashed"
    if isinstance(final, Failed):
        return "failed"
    if isinstance(final, Incomplete):
        return "stopped" if final.reason == STOPPED_REASON else "incomplete"
    return "completed"


class _AnswerTimer:
    """Times one answer (first token, first visible text, whole stream) and counts its end."""

    def __init__(self, metrics: BotMetrics, frontend: str, clock: Callable[[], float]) -> None:
        self._metrics = metrics
        self._frontend = frontend
        self._clock = clock
        self._start = clock()
        self._token_seen = False
        self._shown = False

    def event(self, event: StreamEvent) -> None:
        """Time the first token."""
        if not self._token_seen and isinstance(event, TextDelta | ReasoningDelta):
            self._token_seen = True
            self._metrics.first_token.observe(self._clock() - self._start)

    def shown(self) -> None:
        """Time the first visible text."""
        if not self._shown:
            self._shown = True
            self._metrics.first_text.observe(self._clock() - self._start)

    def finished(self, final: FinalEvent, *, crashed: bool) -> None:
        """Count the answer, its duration, tokens and cost."""
        metrics = self._metrics
        metrics.answers.labels(self._frontend, outcome_of(final, crashed=crashed)).inc()
        metrics.stream.observe(self._clock() - self._start)
        if isinstance(final, Completed | Incomplete):
            usage = final.usage
            metrics.tokens.labels("input").inc(usage.input_tokens)
            metrics.tokens.labels("cached").inc(usage.cached_tokens)
            metrics.tokens.labels("output").inc(usage.output_tokens)
            metrics.tokens.labels("reasoning").inc(usage.reasoning_tokens)
            if usage.cost is not None:
                metrics.cost.inc(max(0.0, usage.cost))
