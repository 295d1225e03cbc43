"""TurnRunner with real parts: its queue, Stop and shutdown, on virtual time, through a recording
sink, with a real ConversationService against the local Responses server and real Redis."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from bot.core.conversation import ConversationService
from bot.core.errors import StorageError
from bot.core.events import HistoryItem
from bot.core.history import HistoryStore
from bot.core.inflight import InFlightAnswers
from bot.core.keys import ConversationKey
from bot.core.last_answers import LastAnswers
from bot.core.pacing import EditPacer
from bot.core.prefs import Effective, Preferences, PrefName
from bot.core.renderer import SentMessage
from bot.core.responses import ResponsesClient
from bot.core.turnlock import TurnLock
from bot.core.turns import Finished, TurnRunner
from bot.frontend.answers import AnswerButtons
from tests.support.fake_responses import FakeResponsesServer, SseStream, Wait, sse_stream
from tests.support.recording_sink import RecordingSink
from tests.support.redis_proxy import RedisProxy
from tests.support.redis_server import RedisServer
from tests.support.virtual_time import run_virtual

T = TypeVar("T")
KEY = ConversationKey("700", "701")
OTHER = ConversationKey("700", "702")
IO_GRACE = 0.05
VIRTUAL_FOREVER = 3600
"""Seconds of virtual time no scenario needs (a broken one still ends, in a minute or two)."""
STOPPED = "-# ⏹️ Stopped."
MODEL = "openai/gpt-4o-mini"
"""The model the rig asks for, and the one the local Responses server says answered."""


async def no_sleep(_seconds: float) -> None:
    """Retry waits return at once."""


@dataclass
class WatchedSink(RecordingSink):
    """A recording sink a test can wait on, which also records button changes."""

    views: list[tuple[str, object]] = field(default_factory=list)

    def __post_init__(self) -> None:
        """The recorder's defaults plus a condition notified on every change."""
        super().__post_init__()
        self.changed = asyncio.Condition()

    async def send(self, content: str, *, first: bool) -> SentMessage:
        """Send as the recorder does, then wake waiters."""
        message = await super().send(content, first=first)
        await self._notify()
        return message

    async def edit(self, message: SentMessage, content: str) -> None:
        """Edit as the recorder does, then wake waiters."""
        await super().edit(message, content)
        await self._notify()

    async def set_view(self, message: SentMessage, view: object) -> None:
        """Record a button change."""
        self.views.append((message.id, view))

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Return once `predicate` holds (checked after every send and edit)."""
        async with self.changed:
            await self.changed.wait_for(predicate)

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()


@dataclass
class Rig:
    """A TurnRunner wired to real parts, and those parts."""

    runner: TurnRunner
    server: FakeResponsesServer
    store: HistoryStore
    last_answers: LastAnswers
    redis: aioredis.Redis
    proxy: RedisProxy
    inflight: InFlightAnswers | None = None


def run_with_rig(
    redis_server: RedisServer,
    scenario: Callable[[Rig], Awaitable[T]],
    *,
    queue_depth: int = 5,
    prefs: type[Preferences] = Preferences,
    inflight: bool = False,
) -> T:
    """Run `scenario` on virtual time with a TurnRunner on the test redis and a fake API.

    The runner reaches Redis through a proxy the scenario can cut (`rig.proxy`)."""

    async def main() -> T:
        proxy = RedisProxy(redis_server.port)
        await proxy.start()
        redis = aioredis.Redis.from_url(proxy.url)
        await redis.flushdb()
        try:
            async with FakeResponsesServer() as server, aiohttp.ClientSession() as session:
                # Real I/O slower than IO_GRACE lets virtual time run on (a loaded machine): the
                # client's own timeouts are out of reach, so only the scenario decides the order.
                client = ResponsesClient(
                    session,
                    base_url=server.url,
                    api_key="k",
                    sleep=no_sleep,
                    first_byte_timeout=VIRTUAL_FOREVER,
                    idle_timeout=VIRTUAL_FOREVER,
                )
                store = HistoryStore(redis, max_items=40, max_chars=40_000, ttl_seconds=600)
                service = ConversationService(client, store, TurnLock(redis), max_output_tokens=256)
                choices = prefs(redis, default_model=MODEL, default_system="Be brief.")
                last_answers = LastAnswers(redis)
                records = InFlightAnswers(redis, process_id="runner") if inflight else None
                runner = TurnRunner(
                    service,
                    choices,
                    EditPacer(),
                    last_answers,
                    queue_depth=queue_depth,
                    inflight=records,
                )
                rig = Rig(runner, server, store, last_answers, redis, proxy, records)
                return await scenario(rig)
        finally:
            await redis.aclose()
            await proxy.stop()

    return run_virtual(main(), io_grace=IO_GRACE)


def question(text: str) -> list[HistoryItem]:
    """One question from Ann."""
    return [HistoryItem(role="user", text=text, speaker="Ann")]


def held(deltas: Sequence[str], release: asyncio.Event, message_id: str) -> SseStream:
    """An answer whose headers come at once and whose body waits for `release`."""
    return SseStream([Wait(release), sse_stream(list(deltas), message_id=message_id)])


def first_then_held(first: str, release: asyncio.Event, message_id: str) -> SseStream:
    """An answer that sends its first delta, then waits for `release` (forever, if never set)."""
    whole = sse_stream([first, " and more"], message_id=message_id)
    cut = whole.index(b" and more")
    cut = whole.rindex(b"\n\n", 0, cut) + 2
    return SseStream([whole[:cut], Wait(release), whole[cut:]])


def job_of(
    rig: Rig,
    key: ConversationKey,
    text: str,
    sink: WatchedSink,
    done: list[str],
    *,
    finished: asyncio.Event | None = None,
) -> Callable[[], Awaitable[None]]:
    """A queued job that answers `text` into `sink` and notes when it is done."""

    async def job() -> None:
        await rig.runner.run(key, question(text), asker_id=1, sink=sink)
        done.append(text)
        if finished is not None:
            finished.set()

    return job


def test_queue_runs_jobs_in_order_and_refuses_past_its_depth(redis_server: RedisServer) -> None:
    """With QUEUE_DEPTH=1 one job runs, one waits, a third is refused; they run first in first."""

    async def scenario(rig: Rig) -> dict[str, Any]:
        release = asyncio.Event()
        rig.server.push(
            held(["First answer."], release, "msg_1"),
            SseStream([sse_stream(["Second answer."], message_id="msg_2")]),
        )
        sinks = [WatchedSink(channel="701") for _ in range(3)]
        done: list[str] = []
        all_done = asyncio.Event()
        accepted = [
            rig.runner.submit(KEY, job_of(rig, KEY, "one", sinks[0], done)),
            rig.runner.submit(KEY, job_of(rig, KEY, "two", sinks[1], done, finished=all_done)),
            rig.runner.submit(KEY, job_of(rig, KEY, "three", sinks[2], done)),
        ]
        busy_while_held = rig.runner.busy(KEY)
        release.set()
        await all_done.wait()
        return {
            "accepted": accepted,
            "busy": busy_while_held,
            "done": done,
            "contents": [sink.messages() for sink in sinks],
            "history": [item.text for item in await rig.store.load(KEY)],
            "requests": len(rig.server.requests),
            "busy_after": rig.runner.busy(KEY),
        }

    result = run_with_rig(redis_server, scenario, queue_depth=1)
    assert result["accepted"] == [True, True, False]
    assert result["busy"] is True
    assert result["done"] == ["one", "two"]
    assert result["contents"] == [["First answer."], ["Second answer."], []]
    assert result["history"] == ["one", "First answer.", "two", "Second answer."]
    assert result["requests"] == 2
    assert result["busy_after"] is False


def test_other_conversations_do_not_wait_for_each_other(redis_server: RedisServer) -> None:
    """A held answer in one channel does not hold up the queue of another."""

    async def scenario(rig: Rig) -> list[str]:
        release = asyncio.Event()
        rig.server.push(
            first_then_held("Slow", release, "msg_slow"),
            SseStream([sse_stream(["Quick."], message_id="msg_quick")]),
        )
        done: list[str] = []
        quick_done = asyncio.Event()
        slow = WatchedSink(channel="701")
        rig.runner.submit(KEY, job_of(rig, KEY, "slow", slow, done))
        # The server hands out its answers in the order requests come: the slow one first.
        await slow.wait_for(lambda: any("Slow" in c for c in slow.messages()))
        quick = WatchedSink(channel="702")
        rig.runner.submit(OTHER, job_of(rig, OTHER, "quick", quick, done, finished=quick_done))
        await quick_done.wait()
        release.set()
        await rig.runner.shutdown()
        return done

    assert run_with_rig(redis_server, scenario) == ["quick", "slow"]


def test_stop_ends_the_answer_keeping_its_text(redis_server: RedisServer) -> None:
    """Stop mid-stream: the reply keeps its text with "Stopped.", the history keeps it too."""

    async def scenario(rig: Rig) -> dict[str, Any]:
        never = asyncio.Event()
        rig.server.push(first_then_held("Partial", never, "msg_stop"))
        sink = WatchedSink(channel="701")
        done: list[str] = []
        finished = asyncio.Event()
        rig.runner.submit(KEY, job_of(rig, KEY, "go on", sink, done, finished=finished))
        await sink.wait_for(lambda: any("Partial" in c for c in sink.messages()))
        running = rig.runner.running(KEY)
        assert running is not None
        running.stop.set()
        await finished.wait()
        stored = await rig.store.load(KEY)
        return {
            "messages": sink.messages(),
            "stored": [(item.role, item.text, item.status) for item in stored],
            "running": rig.runner.running(KEY),
            "disconnected": rig.server.disconnects,
        }

    result = run_with_rig(redis_server, scenario)
    assert result["messages"] == [f"Partial\n\n{STOPPED}"]
    assert result["stored"] == [
        ("user", "go on", "completed"),
        ("assistant", "Partial", "incomplete"),
    ]
    assert result["running"] is None
    assert result["disconnected"] == 1


def test_shutdown_stops_every_streaming_answer_and_keeps_them(redis_server: RedisServer) -> None:
    """shutdown() stops the answers of all channels; each keeps and stores its text so far."""

    async def scenario(rig: Rig) -> dict[str, Any]:
        never = asyncio.Event()
        rig.server.push(
            first_then_held("Alpha", never, "msg_a"), first_then_held("Beta", never, "msg_b")
        )
        sinks = {KEY: WatchedSink(channel="701"), OTHER: WatchedSink(channel="702")}
        done: list[str] = []
        # The server hands out its answers in the order requests come: one channel at a time.
        for word, (key, sink) in zip(["Alpha", "Beta"], sinks.items(), strict=True):
            rig.runner.submit(key, job_of(rig, key, f"q {key.channel}", sink, done))
            await sink.wait_for(lambda s=sink, w=word: any(w in c for c in s.messages()))
        await rig.runner.shutdown()
        return {
            "messages": {key.channel: sink.messages() for key, sink in sinks.items()},
            "stored": {key.channel: [i.text for i in await rig.store.load(key)] for key in sinks},
            "done": sorted(done),
            "busy": [rig.runner.busy(key) for key in sinks],
        }

    result = run_with_rig(redis_server, scenario)
    assert result["messages"] == {
        "701": [f"Alpha\n\n{STOPPED}"],
        "702": [f"Beta\n\n{STOPPED}"],
    }
    assert result["stored"] == {"701": ["q 701", "Alpha"], "702": ["q 702", "Beta"]}
    assert result["done"] == ["q 701", "q 702"]
    assert result["busy"] == [False, False]


def test_finished_answers_become_the_latest(redis_server: RedisServer) -> None:
    """The finisher runs after the answer is remembered, and learns which answer it follows."""

    async def scenario(rig: Rig) -> list[tuple[list[str], list[str] | None, list[str] | None]]:
        rig.server.push(
            SseStream([sse_stream(["One."], message_id="msg_1")]),
            SseStream([sse_stream(["Two."], message_id="msg_2")]),
        )
        seen: list[tuple[list[str], list[str] | None, list[str] | None]] = []

        async def finish(done: Finished) -> None:
            latest = await rig.last_answers.get(done.key)
            seen.append(([m.id for m in done.shown], done.previous, latest))

        for text in ("first", "second"):
            sink = WatchedSink(channel=text)
            await rig.runner.run(KEY, question(text), asker_id=1, sink=sink, finish=finish)
        return seen

    assert run_with_rig(redis_server, scenario) == [
        (["first-0"], None, ["first-0"]),
        (["second-0"], ["first-0"], ["second-0"]),
    ]


class BrokenPreferences(Preferences):
    """Choices whose reading fails with an error nobody planned for (a failing collaborator)."""

    async def effective(self, key: ConversationKey) -> dict[PrefName, Effective]:
        """Fail as a bug would."""
        raise RuntimeError("broken preferences")


def test_an_unexpected_failure_is_told_and_loses_stop(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A turn that raises: the reply is one notice, its buttons go, the log has the traceback."""

    async def scenario(rig: Rig) -> dict[str, Any]:
        sink = WatchedSink(channel="701")
        buttons = AnswerButtons(rig.runner, rig.last_answers, EditPacer(), lambda _id: None)
        answer = await rig.runner.run(
            KEY, question("hi"), asker_id=1, sink=sink, finish=buttons.finisher(sink)
        )
        return {
            "messages": sink.messages(),
            "views": sink.views,
            "crashed": answer.crashed,
            "latest": await rig.last_answers.get(KEY),
            "requests": len(rig.server.requests),
        }

    with caplog.at_level(logging.ERROR, logger="bot.core.turns"):
        result = run_with_rig(redis_server, scenario, prefs=BrokenPreferences)
    assert result["messages"] == ["-# ⚠️ Something went wrong on my side; please try again."]
    assert result["views"] == [("701-0", None)]
    assert result["crashed"] is True
    assert result["latest"] is None
    assert result["requests"] == 0
    [record] = [r for r in caplog.records if "failed unexpectedly" in r.getMessage()]
    assert record.exc_info is not None
    assert "broken preferences" in str(record.exc_info[1])


def test_choices_in_force_shape_the_request_and_the_footer(redis_server: RedisServer) -> None:
    """The reasoning, fallback and footer choices reach the request and the reply; `web` turns
    web search on for that answer only; another model answering is named."""

    async def scenario(rig: Rig) -> dict[str, Any]:
        prefs = Preferences(rig.redis, default_model=MODEL, default_system="Be brief.")
        await prefs.set(KEY, "channel", "reasoning", "low")
        await prefs.set(KEY, "channel", "fallbacks", "anthropic/claude-3.5-sonnet")
        await prefs.set(KEY, "server", "footer", "on")
        usage = {"input_tokens": 1200, "output_tokens": 30, "cost": 0.0025}
        rig.server.push(
            SseStream([sse_stream(["One."], usage=usage)]),
            SseStream([sse_stream(["Two."], answered_by="anthropic/claude-3.5-sonnet")]),
        )
        sinks = [WatchedSink(channel="701"), WatchedSink(channel="701")]
        await rig.runner.run(KEY, question("one"), asker_id=1, sink=sinks[0], web=True)
        await rig.runner.run(KEY, question("two"), asker_id=1, sink=sinks[1])
        return {
            "bodies": [request.body for request in rig.server.requests],
            "contents": [sink.messages() for sink in sinks],
        }

    result = run_with_rig(redis_server, scenario)
    first, second = result["bodies"]
    assert first["reasoning"] == {"effort": "low", "summary": "auto"}
    assert first["models"] == [MODEL, "anthropic/claude-3.5-sonnet"]
    assert first["plugins"] == [{"id": "web", "max_results": 5}]
    assert "plugins" not in second
    assert first["instructions"] == second["instructions"]
    assert result["contents"][0] == ["One.\n\n-# 1,200 in · 30 out · $0.0025"]
    [two] = result["contents"][1]
    assert two.startswith("Two.\n\n-# Answered by anthropic/claude-3.5-sonnet\n-# ")


class UnreachablePreferences(Preferences):
    """Choices whose store is down (Redis refusing connections)."""

    async def effective(self, key: ConversationKey) -> dict[PrefName, Effective]:
        """Fail as an unreachable Redis does."""
        raise RedisConnectionError("Connection refused")


def test_unreadable_choices_end_the_answer_with_a_storage_notice(
    redis_server: RedisServer,
) -> None:
    """Choices that cannot be read: no request, the reply is the storage notice."""

    async def scenario(rig: Rig) -> dict[str, Any]:
        sink = WatchedSink(channel="701")
        answer = await rig.runner.run(KEY, question("hi"), asker_id=1, sink=sink)
        return {
            "messages": sink.messages(),
            "crashed": answer.crashed,
            "requests": len(rig.server.requests),
        }

    result = run_with_rig(redis_server, scenario, prefs=UnreachablePreferences)
    assert result["messages"] == [f"-# ⚠️ {StorageError.default_user_message}"]
    assert result["crashed"] is False
    assert result["requests"] == 0


def test_an_answer_that_could_not_be_stored_says_so_and_gets_no_regenerate(
    redis_server: RedisServer,
) -> None:
    """Redis is lost while the answer streams: its last line says it was not saved, it gets no
    Regenerate and is not remembered as the latest answer; the question stored at the start
    stays."""

    async def scenario(rig: Rig) -> dict[str, Any]:
        release = asyncio.Event()
        rig.server.push(first_then_held("Partial", release, "msg_lost"))
        sink = WatchedSink(channel="701")
        buttons = AnswerButtons(rig.runner, rig.last_answers, EditPacer(), lambda _id: None)
        finished = asyncio.Event()

        async def job() -> None:
            await rig.runner.run(
                KEY, question("hi"), asker_id=1, sink=sink, finish=buttons.finisher(sink)
            )
            finished.set()

        rig.runner.submit(KEY, job)
        await sink.wait_for(lambda: any("Partial" in c for c in sink.messages()))
        await rig.proxy.cut()
        release.set()
        await finished.wait()
        rig.proxy.restore()
        return {
            "messages": sink.messages(),
            "views": sink.views,
            "latest": await rig.last_answers.get(KEY),
            "history": [(i.role, i.text) for i in await rig.store.load(KEY)],
        }

    result = run_with_rig(redis_server, scenario)
    assert result["messages"] == [
        "Partial and more\n\n-# ⚠️ This answer could not be saved, so I won't remember it."
    ]
    assert result["views"] == [("701-0", None)]
    assert result["latest"] is None
    assert result["history"] == [("user", "hi")]
