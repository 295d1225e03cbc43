"""ConversationService end to end: real ResponsesClient, fake Responses API, Redis store, lock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from bot.core import errors
from bot.core.conversation import (
    ConversationService,
    NothingToAnswerError,
    TurnRequest,
    UnexpectedTurnError,
)
from bot.core.events import (
    Completed,
    Failed,
    HistoryItem,
    Incomplete,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
)
from bot.core.history import HistoryStore
from bot.core.keys import ConversationKey
from bot.core.options import AnswerOptions
from bot.core.responses import ResponsesClient
from bot.core.turnlock import TurnLock
from tests.support.fake_responses import (
    ABORT,
    FakeResponsesServer,
    SseStream,
    Wait,
    answer_events,
    encode_events,
    error_response,
    sse_stream,
)

KEY = ConversationKey("900", "901")
API_KEY = "sk-or-conversation-test-key"


async def no_sleep(_seconds: float) -> None:
    """Retry waits return at once."""


def opening(deltas: list[str], message_id: str) -> bytes:
    """The start of an answer: created, the message item, the deltas, and nothing final."""
    events = answer_events(deltas, message_id=message_id, end="none")
    return encode_events(events[:-1], style="openai")


@pytest.fixture
async def server() -> AsyncIterator[FakeResponsesServer]:
    """A scripted Responses API on 127.0.0.1."""
    async with FakeResponsesServer() as fake:
        yield fake


@pytest.fixture
async def service(
    server: FakeResponsesServer, redis_client: aioredis.Redis
) -> AsyncIterator[ConversationService]:
    """The conversation service wired to the fake server and the test redis."""
    async with aiohttp.ClientSession() as session:
        client = ResponsesClient(session, base_url=server.url, api_key=API_KEY, sleep=no_sleep)
        store = HistoryStore(redis_client, max_items=40, max_chars=40_000, ttl_seconds=600)
        yield ConversationService(client, store, TurnLock(redis_client), max_output_tokens=256)


def user_turn(text: str, **options: Any) -> TurnRequest:
    """A turn in the test conversation saying `text`."""
    return TurnRequest(
        key=KEY,
        new_items=[HistoryItem(role="user", text=text, speaker="Ann")] if text else [],
        user_key="test:1",
        model="test/model",
        instructions="Be brief.",
        **options,
    )


def answer(deltas: list[str], message_id: str, **options: Any) -> SseStream:
    """A whole streamed answer."""
    return SseStream([sse_stream(deltas, message_id=message_id, **options)])


def user(text: str) -> HistoryItem:
    """The stored form of a user item of this test."""
    return HistoryItem(role="user", text=text, speaker="Ann")


def reply(text: str, item_id: str, status: str = "completed") -> HistoryItem:
    """The stored form of an assistant item."""
    return HistoryItem(role="assistant", text=text, item_id=item_id, status=status)  # type: ignore[arg-type]


def request_input(server: FakeResponsesServer, index: int) -> list[dict[str, Any]]:
    """The `input` list of the index-th request the server received."""
    body = server.requests[index].body
    assert isinstance(body, dict)
    items: list[dict[str, Any]] = body["input"]
    return items


def assert_well_formed(items: list[dict[str, Any]]) -> None:
    """Input items start with a user message; every assistant item has an id and a status."""
    assert items[0]["role"] == "user"
    for item in items:
        assert item["type"] == "message"
        if item["role"] == "assistant":
            assert item["id"].startswith("msg_")
            assert item["status"] in {"completed", "incomplete"}
            assert item["content"][0]["type"] == "output_text"


async def test_turn_stores_the_question_and_the_answer(
    service: ConversationService, server: FakeResponsesServer
) -> None:
    """A completed turn streams its text to on_event and stores user + answer with id and status."""
    server.push(answer(["Hel", "lo"], "msg_first"))
    seen: list[StreamEvent] = []
    result = await service.run_turn(user_turn("Hi"), seen.append)
    assert result.text == "Hello"
    assert result.outcome == "completed"
    assert [e.text for e in seen if isinstance(e, TextDelta)] == ["Hel", "lo"]
    assert isinstance(seen[-1], Completed)
    assert await service.store.load(KEY) == [user("Hi"), reply("Hello", "msg_first")]
    assert result.stored == [user("Hi"), reply("Hello", "msg_first")]
    body = server.requests[0].body
    assert body["model"] == "test/model"
    assert body["instructions"] == "Be brief."
    assert body["max_output_tokens"] == 256
    assert request_input(server, 0) == [
        {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "[Ann]: Hi"}],
        }
    ]


async def test_second_request_carries_the_first_answer(
    service: ConversationService, server: FakeResponsesServer
) -> None:
    """The next turn sends the first exchange back, the answer with its id and status."""
    server.push(answer(["One"], "msg_one"), answer(["Two"], "msg_two"))
    await service.run_turn(user_turn("First?"), lambda _e: None)
    await service.run_turn(user_turn("Second?"), lambda _e: None)
    sent = request_input(server, 1)
    assert [item["role"] for item in sent] == ["user", "assistant", "user"]
    assert sent[1] == {
        "type": "message",
        "role": "assistant",
        "id": "msg_one",
        "status": "completed",
        "content": [{"type": "output_text", "text": "One", "annotations": []}],
    }
    assert sent[2]["content"][0]["text"] == "[Ann]: Second?"
    history = await service.store.load(KEY)
    assert history == [
        user("First?"),
        reply("One", "msg_one"),
        user("Second?"),
        reply("Two", "msg_two"),
    ]


async def test_reasoning_and_sources_are_neither_stored_nor_sent_back(
    service: ConversationService, server: FakeResponsesServer
) -> None:
    """A turn that reasoned and cited sources stores only its answer text; the next request
    sends that text back with empty annotations and no reasoning item, with the options on."""
    options = AnswerOptions(reasoning_effort="medium", web=True, fallback_models=("b/one",))
    server.push(
        answer(
            ["The answer."],
            "msg_reasoned",
            reasoning=["**Summary** of thought."],
            raw_reasoning=["raw chain of thought"],
            citations=[("https://example.com/a", "A")],
        ),
        answer(["Again."], "msg_again"),
    )
    seen: list[StreamEvent] = []
    first = await service.run_turn(user_turn("Q1", options=options), seen.append)
    assert first.text == "The answer."
    assert any(isinstance(e, ReasoningDelta) and e.summary for e in seen)
    await service.run_turn(user_turn("Q2", options=options), lambda _e: None)
    assert await service.store.load(KEY) == [
        user("Q1"),
        reply("The answer.", "msg_reasoned"),
        user("Q2"),
        reply("Again.", "msg_again"),
    ]
    sent = server.requests[1].raw
    assert b"chain of thought" not in sent
    assert b"Summary" not in sent
    assert b"example.com" not in sent
    assert [item["role"] for item in request_input(server, 1)] == ["user", "assistant", "user"]
    assert server.requests[1].body["reasoning"] == {"effort": "medium", "summary": "auto"}


async def test_failure_mid_stream_keeps_the_partial_answer_as_incomplete(
    service: ConversationService, server: FakeResponsesServer
) -> None:
    """A cut connection keeps user + partial text (incomplete); the next request is valid."""
    server.push(SseStream([opening(["Par", "tial"], "msg_cut"), ABORT]), answer(["Ok"], "msg_ok"))
    result = await service.run_turn(user_turn("Q1"), lambda _e: None)
    assert result.outcome == "failed"
    assert isinstance(result.error, errors.LLMStreamError)
    assert result.text == "Partial"
    history = await service.store.load(KEY)
    assert [(i.role, i.text, i.status) for i in history] == [
        ("user", "Q1", "completed"),
        ("assistant", "Partial", "incomplete"),
    ]
    await service.run_turn(user_turn("Q2"), lambda _e: None)
    sent = request_input(server, 1)
    assert_well_formed(sent)
    assert [(i["role"], i.get("status")) for i in sent] == [
        ("user", None),
        ("assistant", "incomplete"),
        ("user", None),
    ]
    assert sent[1]["content"][0]["text"] == "Partial"
    assert history[1].item_id == "msg_cut"  # the id the API gave its output message
    assert sent[1]["id"] == history[1].item_id


async def test_failure_without_text_keeps_only_the_question(
    service: ConversationService, server: FakeResponsesServer
) -> None:
    """A refused request stores the user's item alone, and the next request is still valid."""
    server.push(error_response(401, "No auth credentials found"), answer(["Fine"], "msg_fine"))
    result = await service.run_turn(user_turn("Q1"), lambda _e: None)
    assert isinstance(result.error, errors.AuthenticationError)
    assert result.text == ""
    assert await service.store.load(KEY) == [user("Q1")]
    await service.run_turn(user_turn("Q2"), lambda _e: None)
    sent = request_input(server, 1)
    assert_well_formed(sent)
    assert [i["content"][0]["text"] for i in sent] == ["[Ann]: Q1", "[Ann]: Q2"]
    assert await service.store.load(KEY) == [user("Q1"), user("Q2"), reply("Fine", "msg_fine")]


async def test_stop_mid_stream_keeps_the_text_so_far(
    service: ConversationService, server: FakeResponsesServer
) -> None:
    """Setting `stop` during the answer ends it as incomplete, keeping what had arrived."""
    release = asyncio.Event()
    rest = encode_events(answer_events(["never"], message_id="msg_stop")[-3:], style="openai")
    server.push(SseStream([opening(["So ", "far"], "msg_stop"), Wait(release), rest]))
    stop = asyncio.Event()

    def on_event(event: StreamEvent) -> None:
        """Press stop at the first visible text."""
        if isinstance(event, TextDelta):
            stop.set()

    try:
        result = await service.run_turn(user_turn("Long?"), on_event, stop=stop)
    finally:
        release.set()
    assert isinstance(result.final, Incomplete)
    assert result.final.reason == "stopped"
    assert result.text == "So far"
    history = await service.store.load(KEY)
    assert [(i.role, i.text, i.status) for i in history] == [
        ("user", "Long?", "completed"),
        ("assistant", "So far", "incomplete"),
    ]


async def test_the_question_is_stored_when_the_turn_starts(
    service: ConversationService, server: FakeResponsesServer
) -> None:
    """The user's item is in the history while the answer streams, before any final event,
    so a process that dies mid-answer has not lost the question; the answer follows it."""
    release = asyncio.Event()
    whole = sse_stream(["Later", " on"], message_id="msg_late")
    cut = whole.rindex(b"\n\n", 0, whole.index(b'" on"')) + 2
    server.push(SseStream([whole[:cut], Wait(release), whole[cut:]]))
    streaming = asyncio.Event()

    def on_event(event: StreamEvent) -> None:
        """Note the first visible text."""
        if isinstance(event, TextDelta):
            streaming.set()

    turn = asyncio.create_task(service.run_turn(user_turn("Asked first"), on_event))
    try:
        await streaming.wait()
        during = await service.store.load(KEY)
    finally:
        release.set()
    await turn
    assert during == [user("Asked first")]
    assert await service.store.load(KEY) == [user("Asked first"), reply("Later on", "msg_late")]


async def test_record_false_stores_nothing(
    service: ConversationService, server: FakeResponsesServer
) -> None:
    """A turn with record=False sees the history but leaves it as it was."""
    server.push(answer(["One"], "msg_one"), answer(["Aside"], "msg_aside"))
    await service.run_turn(user_turn("First?"), lambda _e: None)
    before = await service.store.load(KEY)
    result = await service.run_turn(user_turn("Aside?", record=False), lambda _e: None)
    assert result.text == "Aside"
    assert result.stored == []
    assert await service.store.load(KEY) == before
    assert [i["role"] for i in request_input(server, 1)] == ["user", "assistant", "user"]


async def test_record_false_on_an_empty_conversation_creates_no_key(
    service: ConversationService, server: FakeResponsesServer, redis_client: aioredis.Redis
) -> None:
    """An unrecorded turn in a new conversation leaves Redis without its items key."""
    server.push(answer(["Aside"], "msg_aside"))
    await service.run_turn(user_turn("Aside?", record=False), lambda _e: None)
    assert await redis_client.exists(KEY.items) == 0


async def test_regenerate_replaces_the_last_answer(
    service: ConversationService, server: FakeResponsesServer
) -> None:
    """Regenerating asks the last question again without the old answer and replaces it."""
    server.push(
        answer(["One"], "msg_one"),
        answer(["Two"], "msg_two"),
        answer(["Two again"], "msg_two_b"),
    )
    await service.run_turn(user_turn("First?"), lambda _e: None)
    await service.run_turn(user_turn("Second?"), lambda _e: None)
    result = await service.run_turn(user_turn("", regenerate=True), lambda _e: None)
    assert result.text == "Two again"
    sent = request_input(server, 2)
    assert [i["role"] for i in sent] == ["user", "assistant", "user"]
    assert sent[-1]["content"][0]["text"] == "[Ann]: Second?"
    assert await service.store.load(KEY) == [
        user("First?"),
        reply("One", "msg_one"),
        user("Second?"),
        reply("Two again", "msg_two_b"),
    ]


async def test_regenerate_after_a_failure_without_text_adds_the_answer(
    service: ConversationService, server: FakeResponsesServer
) -> None:
    """When the last question has no answer, regenerating appends one after it."""
    server.push(error_response(402, "Insufficient credits"), answer(["Now"], "msg_now"))
    await service.run_turn(user_turn("Q?"), lambda _e: None)
    await service.run_turn(user_turn("", regenerate=True), lambda _e: None)
    assert await service.store.load(KEY) == [user("Q?"), reply("Now", "msg_now")]


async def test_concurrent_turns_in_one_conversation_are_serialised(
    service: ConversationService, server: FakeResponsesServer
) -> None:
    """Two turns at once run one after the other: user1, answer1, user2, answer2."""
    release = asyncio.Event()
    rest = encode_events(answer_events(["A1"], message_id="msg_a1")[-2:], style="openai")
    server.push(SseStream([opening(["A1"], "msg_a1"), Wait(release), rest]))
    server.push(answer(["A2"], "msg_a2"))
    requests_while_first_streamed: list[int] = []

    def first_on_event(event: StreamEvent) -> None:
        """At the first answer's text, note what the server saw, then let the answer finish."""
        if isinstance(event, TextDelta):
            requests_while_first_streamed.append(len(server.requests))
            assert service.lock.queued(KEY) == 2
            release.set()

    first, second = await asyncio.gather(
        service.run_turn(user_turn("Q1"), first_on_event),
        service.run_turn(user_turn("Q2"), lambda _e: None),
    )
    assert requests_while_first_streamed == [1]
    assert (first.text, second.text) == ("A1", "A2")
    assert await service.store.load(KEY) == [
        user("Q1"),
        reply("A1", "msg_a1"),
        user("Q2"),
        reply("A2", "msg_a2"),
    ]
    assert [i["role"] for i in request_input(server, 1)] == ["user", "assistant", "user"]


async def test_stream_failure_event_is_reported_and_kept(
    service: ConversationService, server: FakeResponsesServer
) -> None:
    """A response.failed event after some text ends the turn failed, text kept as incomplete."""
    server.push(answer(["Half"], "msg_half", end="failed"))
    result = await service.run_turn(user_turn("Q"), lambda _e: None)
    assert isinstance(result.final, Failed)
    history = await service.store.load(KEY)
    assert history[-1].text == "Half"
    assert history[-1].status == "incomplete"


async def test_regenerate_with_no_history_sends_no_request(
    service: ConversationService, server: FakeResponsesServer
) -> None:
    """Regenerate after the history was cleared: a clear failure, no request, nothing stored."""
    seen: list[StreamEvent] = []
    result = await service.run_turn(user_turn("", regenerate=True), seen.append)
    assert server.requests == []
    assert isinstance(result.final, Failed)
    assert isinstance(result.error, NothingToAnswerError)
    assert "no question to answer" in result.error.user_message
    assert seen == [result.final]
    assert await service.store.load(KEY) == []


async def test_an_unexpected_failure_mid_stream_ends_as_a_failure_not_as_stopped(
    service: ConversationService, server: FakeResponsesServer
) -> None:
    """A listener that raises mid-stream: a Failed final event, the text so far kept, re-raised."""
    server.push(answer(["Hel", "lo"], "msg_boom"))
    seen: list[StreamEvent] = []

    def listener(event: StreamEvent) -> None:
        seen.append(event)
        if isinstance(event, TextDelta):
            raise RuntimeError("listener broke")

    with pytest.raises(RuntimeError, match="listener broke"):
        await service.run_turn(user_turn("Hi"), listener)
    assert isinstance(seen[-1], Failed)
    assert isinstance(seen[-1].error, UnexpectedTurnError)
    [question, kept] = await service.store.load(KEY)
    assert (question, kept.text, kept.status) == (user("Hi"), "Hel", "incomplete")
