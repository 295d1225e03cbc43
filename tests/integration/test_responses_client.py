"""The Responses client against a scripted local server: framing, errors, retries, timeouts."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.core import errors
from bot.core.events import (
    Citation,
    Completed,
    Failed,
    HistoryItem,
    Incomplete,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
    Usage,
)
from bot.core.options import AnswerOptions
from bot.core.renderer import ReplyLayout, SentMessage
from bot.core.responses import ERROR_BODY_MAX_CHARS, ResponsesClient
from tests.support.fake_responses import (
    ABORT,
    HANG,
    Delay,
    FakeResponsesServer,
    PlainResponse,
    Script,
    SseStream,
    Style,
    answer_events,
    encode_events,
    error_response,
    split_bytes,
    sse_stream,
)

API_KEY = "sk-or-test-secret-key"
REQUEST: dict[str, Any] = {"model": "m", "input": [], "stream": True}
USAGE = Usage(input_tokens=12, output_tokens=5, reasoning_tokens=2, cost=0.00012)


class SleepRecorder:
    """An injectable sleep that records the waits instead of sleeping."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        """Record the wait and return at once."""
        self.waits.append(seconds)


@pytest.fixture
async def server() -> AsyncIterator[FakeResponsesServer]:
    """A fresh scripted server."""
    async with FakeResponsesServer() as fake:
        yield fake


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """One shared HTTP session, as the bot has."""
    async with aiohttp.ClientSession() as http:
        yield http


@pytest.fixture
def sleeps() -> SleepRecorder:
    """The recorded retry waits."""
    return SleepRecorder()


ClientFactory = Callable[..., ResponsesClient]


@pytest.fixture
def make_client(
    server: FakeResponsesServer, session: aiohttp.ClientSession, sleeps: SleepRecorder
) -> ClientFactory:
    """Build a client to the fake server; keyword arguments override the defaults."""

    def build(**overrides: Any) -> ResponsesClient:
        options: dict[str, Any] = {
            "base_url": server.url,
            "api_key": API_KEY,
            "first_byte_timeout": 5,
            "idle_timeout": 5,
            "sleep": sleeps,
        }
        return ResponsesClient(session, **(options | overrides))

    return build


async def collect(client: ResponsesClient, request: dict[str, Any] = REQUEST) -> list[StreamEvent]:
    """Every event of one stream, checking it ends with exactly one final event."""
    async with aclosing(client.stream(request)) as stream:
        events = [event async for event in stream]
    finals = [e for e in events if isinstance(e, Completed | Incomplete | Failed)]
    assert len(finals) == 1
    assert events[-1] is finals[0]
    return events


def text_of(events: list[StreamEvent]) -> str:
    """The visible answer text."""
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def failure(events: list[StreamEvent]) -> errors.LLMError:
    """The error of a stream that failed."""
    final = events[-1]
    assert isinstance(final, Failed), final
    return final.error


def stream_of(*payloads: dict[str, Any], style: Style = "openrouter") -> SseStream:
    """A 200 stream carrying exactly these event payloads."""
    return SseStream([encode_events(list(payloads), style=style)])


@pytest.mark.parametrize("style", ["openrouter", "openai", "docs"])
async def test_each_style_streams_text_and_completes(
    server: FakeResponsesServer, make_client: ClientFactory, style: Style
) -> None:
    """All three framings/vocabularies give the text, message id, model and usage."""
    server.push(SseStream([sse_stream(["Hel", "lo ", "wörld ☃"], style=style)]))
    events = await collect(make_client())
    assert text_of(events) == "Hello wörld ☃"
    assert events[-1] == Completed("msg_tmp_abc123", "openai/gpt-4o-mini", USAGE)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    style=st.sampled_from(["openrouter", "openai", "docs"]),
    deltas=st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=5),
    cuts=st.lists(st.integers(0, 3000), max_size=10),
)
async def test_random_chunk_splits(
    server: FakeResponsesServer,
    make_client: ClientFactory,
    style: Style,
    deltas: list[str],
    cuts: list[int],
) -> None:
    """However the body is cut into chunks, the same text and final event arrive."""
    transcript = sse_stream(deltas, style=style)
    server.reset([SseStream(split_bytes(transcript, cuts))])
    events = await collect(make_client())
    assert text_of(events) == "".join(deltas)
    assert isinstance(events[-1], Completed)


STATUS_ERRORS = [
    (400, errors.BadRequestError),
    (401, errors.AuthenticationError),
    (402, errors.PaymentRequiredError),
    (403, errors.ModerationError),
    (404, errors.ModelNotFoundError),
    (408, errors.RequestTimeoutError),
    (413, errors.PayloadTooLargeError),
    (429, errors.RateLimitError),
    (500, errors.ServerError),
    (502, errors.ServerError),
    (503, errors.ServerError),
]


@pytest.mark.parametrize(("status", "kind"), STATUS_ERRORS)
async def test_every_error_status_maps_to_its_error(
    server: FakeResponsesServer,
    make_client: ClientFactory,
    status: int,
    kind: type[errors.LLMStatusError],
) -> None:
    """Each HTTP error status becomes its typed error, with the API's message and code; the
    user's line is the status's sentence followed by the API's message."""
    server.push(error_response(status, f"failure {status}"))
    error = failure(await collect(make_client(max_retries=0)))
    assert type(error) is kind
    assert isinstance(error, errors.LLMStatusError)
    assert (error.status, error.code, error.detail) == (status, status, f"failure {status}")
    assert error.user_message == f"{kind.default_user_message} (failure {status})"
    assert API_KEY not in str(error) + error.user_message


async def test_403_carries_the_moderation_reason(
    server: FakeResponsesServer, make_client: ClientFactory
) -> None:
    """A 403's metadata reasons reach the user's message."""
    metadata = {"reasons": ["violence"], "flagged_input": "...", "provider_name": "x"}
    server.push(error_response(403, "flagged", code="moderation", metadata=metadata))
    error = failure(await collect(make_client()))
    assert isinstance(error, errors.ModerationError)
    assert (error.code, error.reason) == ("moderation", "violence")
    assert "violence" in error.user_message
    assert len(server.requests) == 1


async def test_non_json_error_body(server: FakeResponsesServer, make_client: ClientFactory) -> None:
    """An HTML error page still gives a typed error by status."""
    server.push(PlainResponse(502, b"<html>Bad gateway</html>", content_type="text/html"))
    error = failure(await collect(make_client(max_retries=0)))
    assert isinstance(error, errors.ServerError)
    assert error.status == 502
    assert "Bad gateway" in error.detail


async def test_huge_error_body_is_read_only_up_to_the_cap(
    server: FakeResponsesServer, make_client: ClientFactory
) -> None:
    """A 500 whose page never ends still maps to ServerError: the client stops at the cap."""
    page = [b"<html>" + b"x" * (64 * 1024)] * 64 + [HANG]
    server.push(SseStream(page, status=500, content_type="text/html"))
    error = failure(await collect(make_client(max_retries=0)))
    assert isinstance(error, errors.ServerError)
    assert error.status == 500
    assert len(error.detail) <= ERROR_BODY_MAX_CHARS
    await asyncio.wait_for(server.disconnected.wait(), 10)


@pytest.mark.parametrize(
    "error_event",
    [
        {"type": "error", "code": "server_error", "message": "boom", "param": None},
        {"type": "error", "error": {"code": "server_error", "message": "boom"}},
        {
            "type": "response.failed",
            "response": {"status": "failed", "error": {"code": "server_error", "message": "boom"}},
        },
    ],
    ids=["flat", "nested", "response.failed"],
)
async def test_error_inside_a_200_stream_keeps_earlier_text(
    server: FakeResponsesServer, make_client: ClientFactory, error_event: dict[str, Any]
) -> None:
    """An error after text arrived fails the stream, saying why; the text stays as TextDeltas."""
    events = answer_events(["Par", "tial"], end="none")[:-1]
    server.push(stream_of(*events, error_event))
    result = await collect(make_client())
    assert text_of(result) == "Partial"
    error = failure(result)
    assert isinstance(error, errors.LLMStreamError)
    assert (error.code, error.detail) == ("server_error", "boom")
    assert error.user_message == "The model provider had an error. Please try again. (boom)"
    assert len(server.requests) == 1


async def test_incomplete_answer(server: FakeResponsesServer, make_client: ClientFactory) -> None:
    """response.incomplete ends with Incomplete and its reason, text kept."""
    server.push(SseStream([sse_stream(["Long ", "answ"], end="incomplete")]))
    events = await collect(make_client())
    assert text_of(events) == "Long answ"
    assert events[-1] == Incomplete(
        "max_output_tokens", message_id="msg_tmp_abc123", model="openai/gpt-4o-mini", usage=USAGE
    )


async def test_completed_event_saying_incomplete(
    server: FakeResponsesServer, make_client: ClientFactory
) -> None:
    """A response.completed whose response.status is "incomplete" ends as Incomplete."""
    events = answer_events(["Cut ", "here"])
    final = events[-1]
    response = {**final["response"], "status": "incomplete"}
    response["incomplete_details"] = {"reason": "max_output_tokens"}
    server.push(stream_of(*events[:-1], {**final, "response": response}))
    result = await collect(make_client())
    assert text_of(result) == "Cut here"
    assert result[-1] == Incomplete(
        "max_output_tokens", message_id="msg_tmp_abc123", model="openai/gpt-4o-mini", usage=USAGE
    )


@pytest.mark.parametrize(
    ("body", "content_type"),
    [(b"<html>hi</html>", "text/html"), (b'{"id": "gen-1", "output": []}', "application/json")],
)
async def test_200_that_is_not_an_event_stream(
    server: FakeResponsesServer, make_client: ClientFactory, body: bytes, content_type: str
) -> None:
    """A 200 with an HTML or JSON body is a stream error, and is not retried."""
    server.push(PlainResponse(200, body, content_type=content_type))
    error = failure(await collect(make_client()))
    assert isinstance(error, errors.LLMStreamError)
    assert "not an event stream" in error.detail
    assert len(server.requests) == 1


async def test_200_json_error_body_is_mapped(
    server: FakeResponsesServer, make_client: ClientFactory
) -> None:
    """A JSON error object in a 200 body is mapped like the status it names."""
    server.push(PlainResponse(200, b'{"error": {"code": 429, "message": "slow down"}}'))
    server.push(PlainResponse(200, b'{"error": {"code": "oops", "message": "broken"}}'))
    client = make_client()
    first = failure(await collect(client))
    assert isinstance(first, errors.RateLimitError)
    assert first.detail == "slow down"
    second = failure(await collect(client))
    assert isinstance(second, errors.LLMStreamError)
    assert (second.code, second.detail) == ("oops", "broken")


@pytest.mark.parametrize("style", ["openrouter", "openai"])
async def test_ended_early_with_every_item_done_is_completed(
    server: FakeResponsesServer, make_client: ClientFactory, style: Style
) -> None:
    """No final event but every item got its .done: Completed with the message id."""
    server.push(SseStream([sse_stream(["All ", "there"], style=style, end="none")]))
    events = await collect(make_client())
    assert text_of(events) == "All there"
    assert events[-1] == Completed("msg_tmp_abc123", "openai/gpt-4o-mini")


@pytest.mark.parametrize("style", ["openrouter", "openai"])
async def test_ended_early_with_an_open_item_fails(
    server: FakeResponsesServer, make_client: ClientFactory, style: Style
) -> None:
    """No final event and an item never done: Failed, text kept."""
    events = answer_events(["Cut ", "sho"], end="none")[:-1]
    server.push(stream_of(*events, style=style))
    result = await collect(make_client())
    assert text_of(result) == "Cut sho"
    error = failure(result)
    assert isinstance(error, errors.LLMStreamError)
    assert "ended early" in error.detail


async def test_empty_stream_fails(server: FakeResponsesServer, make_client: ClientFactory) -> None:
    """A 200 stream with nothing but keep-alives and [DONE] is a failure."""
    server.push(SseStream([b": OPENROUTER PROCESSING\n\ndata: [DONE]\n\n"]))
    assert isinstance(failure(await collect(make_client())), errors.LLMStreamError)


async def test_reasoning_tool_calls_and_unknown_events_are_never_visible(
    server: FakeResponsesServer, make_client: ClientFactory
) -> None:
    """Reasoning becomes ReasoningDelta; tool calls, unknown events and items are ignored."""
    tool = {"type": "function_call", "id": "fc_1", "call_id": "c1", "name": "f", "arguments": ""}
    search = {"type": "openrouter:web_search", "id": "ws_1", "status": "completed"}
    noise = [
        {"type": "response.output_item.added", "output_index": 5, "item": tool},
        {"type": "response.function_call_arguments.delta", "item_id": "fc_1", "delta": '{"x"'},
        {"type": "response.function_call_arguments.done", "item_id": "fc_1", "arguments": "{}"},
        {"type": "response.output_item.done", "output_index": 5, "item": tool},
        {"type": "response.output_item.added", "output_index": 6, "item": search},
        {"type": "response.output_item.done", "output_index": 6, "item": search},
        {"type": "response.reasoning_text.delta", "item_id": "rs_tmp_1", "delta": "think"},
        {"type": "response.brand_new_thing", "delta": "SECRET"},
        {"type": "response.output_text.done", "item_id": "msg_tmp_abc123", "text": "Answer"},
    ]
    events = answer_events(["Ans", "wer"], reasoning=["Let me ", "see"])
    server.push(stream_of(*events[:-1], *noise, events[-1]))
    result = await collect(make_client())
    assert text_of(result) == "Answer"
    reasoning = "".join(e.text for e in result if isinstance(e, ReasoningDelta))
    assert reasoning == "Let me seethink"
    assert isinstance(result[-1], Completed)
    assert result[-1].message_id == "msg_tmp_abc123"


async def test_url_citations(server: FakeResponsesServer, make_client: ClientFactory) -> None:
    """url_citation annotations become Citation events; other annotations are ignored."""
    annotation = {
        "type": "url_citation",
        "url": "https://example.org/a",
        "title": "A",
        "start_index": 0,
        "end_index": 3,
    }
    added = [
        {"type": "response.output_text.annotation.added", "annotation": annotation},
        {"type": "response.output_text.annotation.added", "annotation": {"type": "file_citation"}},
    ]
    events = answer_events(["See A"])
    server.push(stream_of(*events[:-1], *added, events[-1]))
    result = await collect(make_client())
    assert [e for e in result if isinstance(e, Citation)] == [
        Citation("https://example.org/a", "A")
    ]


def _url_citation(url: str) -> dict[str, Any]:
    """A url_citation annotation as web search sends it."""
    return {"type": "url_citation", "url": url, "title": url, "start_index": 0, "end_index": 3}


def _final_content(events: list[StreamEvent]) -> str:
    """The reply a layout shows once it took every event (one message, shown at once)."""
    layout = ReplyLayout()
    for event in events:
        if isinstance(event, TextDelta):
            layout.add_text(event.text)
        elif isinstance(event, Citation):
            layout.add_citation(event)
        elif isinstance(event, Completed | Incomplete | Failed):
            layout.finish(event)
    contents: list[str] = []
    while (operation := layout.take()) is not None:
        contents.append(operation.content)
        layout.applied(operation, SentMessage("1", "channel:1"))
    return contents[-1]


async def test_citations_from_every_place_are_listed_once(
    server: FakeResponsesServer, make_client: ClientFactory
) -> None:
    """Citations in annotation events, the finished message item and the completed response
    each yield one Citation per URL, and the reply lists every source once."""
    events = answer_events(["See A"])
    item_done, completed = events[-2], events[-1]
    annotations = [_url_citation("https://a.example/"), _url_citation("https://b.example/")]
    item = {
        **item_done["item"],
        "content": [{"type": "output_text", "text": "See A", "annotations": annotations}],
    }
    final_item = {
        **item,
        "content": [
            {
                **item["content"][0],
                "annotations": [*annotations, _url_citation("https://c.example/")],
            }
        ],
    }
    added = {"type": "response.output_text.annotation.added", "annotation": annotations[0]}
    server.push(
        stream_of(
            *events[:-2],
            added,
            {**item_done, "item": item},
            {**completed, "response": {**completed["response"], "output": [final_item]}},
        )
    )
    result = await collect(make_client())
    assert [e.url for e in result if isinstance(e, Citation)] == [
        "https://a.example/",
        "https://b.example/",
        "https://c.example/",
    ]
    assert _final_content(result) == (
        "See A\n\n-# 1. [a.example](<https://a.example/>)\n-# 2. [b.example](<https://b.example/>)"
        "\n-# 3. [c.example](<https://c.example/>)"
    )


async def test_malformed_json_event_fails(
    server: FakeResponsesServer, make_client: ClientFactory
) -> None:
    """A data line that is not JSON fails the stream; comments are never parsed."""
    server.push(SseStream([b": not json either\n\n", b'data: {"type": "response.cr\n\n']))
    error = failure(await collect(make_client()))
    assert isinstance(error, errors.LLMStreamError)


async def test_retry_after_is_honoured(
    server: FakeResponsesServer, make_client: ClientFactory, sleeps: SleepRecorder
) -> None:
    """A 429 with Retry-After is retried after exactly that wait."""
    server.push(error_response(429, "slow", headers={"Retry-After": "3"}))
    server.push(SseStream([sse_stream(["ok"])]))
    events = await collect(make_client())
    assert text_of(events) == "ok"
    assert sleeps.waits == [3.0]
    assert len(server.requests) == 2


async def test_retries_back_off_and_give_up(
    server: FakeResponsesServer, make_client: ClientFactory, sleeps: SleepRecorder
) -> None:
    """5xx errors are retried max_retries times with growing jittered waits, then returned."""
    server.push(*(error_response(status) for status in (500, 502, 503, 500)))
    error = failure(await collect(make_client(max_retries=2)))
    assert isinstance(error, errors.ServerError)
    assert error.status == 503
    assert len(server.requests) == 3
    assert len(sleeps.waits) == 2
    assert 0.5 <= sleeps.waits[0] <= 0.6
    assert 1.0 <= sleeps.waits[1] <= 1.2


async def test_retry_budget_caps_total_waiting(
    server: FakeResponsesServer, make_client: ClientFactory, sleeps: SleepRecorder
) -> None:
    """A Retry-After beyond what is left of the 10 s budget ends the retries."""
    server.push(error_response(503, headers={"Retry-After": "6"}))
    server.push(error_response(503, headers={"Retry-After": "6"}))
    error = failure(await collect(make_client(max_retries=5, first_byte_timeout=30)))
    assert isinstance(error, errors.ServerError)
    assert error.retry_after == 6.0
    assert sleeps.waits == [6.0]
    assert len(server.requests) == 2


async def test_retry_after_too_long_is_not_waited(
    server: FakeResponsesServer, make_client: ClientFactory, sleeps: SleepRecorder
) -> None:
    """A Retry-After of 20 s is not waited at all; the rate-limit error returns at once."""
    server.push(error_response(429, headers={"Retry-After": "20"}))
    error = failure(await collect(make_client()))
    assert isinstance(error, errors.RateLimitError)
    assert sleeps.waits == []
    assert len(server.requests) == 1


@pytest.mark.parametrize("status", [400, 401, 402, 403, 404, 413])
async def test_client_errors_are_not_retried(
    server: FakeResponsesServer, make_client: ClientFactory, sleeps: SleepRecorder, status: int
) -> None:
    """4xx errors other than 408 and 429 are returned on the first try."""
    server.push(error_response(status), SseStream([sse_stream(["never"])]))
    failure(await collect(make_client()))
    assert len(server.requests) == 1
    assert sleeps.waits == []


async def test_no_retry_after_a_200_started(
    server: FakeResponsesServer, make_client: ClientFactory, sleeps: SleepRecorder
) -> None:
    """Failures after a 200 began (error event, cut connection, stall) are never retried."""
    spare = SseStream([sse_stream(["never"])])
    partial = encode_events(answer_events(["Hi"], end="none")[:-1])
    for broken in (SseStream([partial, ABORT]), SseStream([HANG])):
        server.reset([broken, spare])
        events = await collect(make_client(first_byte_timeout=0.2))
        assert isinstance(events[-1], Failed)
        assert len(server.requests) == 1
    assert sleeps.waits == []


def closed_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_connection_refused_is_retried_then_reported(
    make_client: ClientFactory, sleeps: SleepRecorder
) -> None:
    """A refused connection is a connection error, retried within the budget."""
    client = make_client(base_url=f"http://127.0.0.1:{closed_port()}/api/v1")
    error = failure(await collect(client))
    assert type(error) is errors.LLMConnectionError
    assert len(sleeps.waits) == 2


async def test_no_headers_spends_the_whole_first_byte_budget_once(
    server: FakeResponsesServer, make_client: ClientFactory, sleeps: SleepRecorder
) -> None:
    """A server that never sends headers gets one attempt: when the first-byte budget (all
    attempts included) is spent, the stream fails with a first_byte timeout, not retried."""
    server.push(*[SseStream([], hold=HANG)] * 3, SseStream([sse_stream(["late"])]))
    error = failure(await collect(make_client(first_byte_timeout=0.2, max_retries=2)))
    assert isinstance(error, errors.LLMTimeoutError)
    assert (error.phase, error.seconds) == ("first_byte", 0.2)
    assert error.user_message == "The model took too long to answer."
    assert len(server.requests) == 1
    assert sleeps.waits == []


async def test_a_retry_wait_beyond_the_first_byte_budget_is_not_waited(
    server: FakeResponsesServer, make_client: ClientFactory, sleeps: SleepRecorder
) -> None:
    """Retry waits count against the first-byte budget: a wait that would outlast it is not
    taken, and the error that asked for it is returned."""
    server.push(error_response(503, headers={"Retry-After": "4"}), SseStream([sse_stream(["x"])]))
    error = failure(await collect(make_client(first_byte_timeout=3, max_retry_wait=10)))
    assert isinstance(error, errors.ServerError)
    assert sleeps.waits == []
    assert len(server.requests) == 1


async def test_first_byte_timeout_after_headers(
    server: FakeResponsesServer, make_client: ClientFactory
) -> None:
    """Headers but no body bytes: a first_byte timeout, reported as such."""
    server.push(SseStream([HANG]))
    error = failure(await collect(make_client(first_byte_timeout=0.2)))
    assert isinstance(error, errors.LLMTimeoutError)
    assert (error.phase, error.seconds) == ("first_byte", 0.2)


async def test_idle_timeout_keeps_earlier_text(
    server: FakeResponsesServer, make_client: ClientFactory
) -> None:
    """A stream that stalls mid-answer fails with an idle timeout; the text stays."""
    partial = encode_events(answer_events(["Half ", "way"], end="none")[:-1])
    server.push(SseStream([partial.removesuffix(b"data: [DONE]\n\n"), HANG]))
    events = await collect(make_client(idle_timeout=0.2))
    assert text_of(events) == "Half way"
    error = failure(events)
    assert isinstance(error, errors.LLMTimeoutError)
    assert error.phase == "idle"
    assert error.user_message == "The model stopped sending mid-answer."


async def test_keep_alive_comments_reset_the_idle_timer(
    server: FakeResponsesServer, make_client: ClientFactory
) -> None:
    """Comments paced below the idle timeout keep a stream alive for twice that long."""
    transcript = sse_stream(["Warm ", "start"])
    keep_alives: list[bytes | Delay] = []
    for _ in range(8):
        keep_alives += [Delay(0.15), b": OPENROUTER PROCESSING\n\n"]
    server.push(SseStream([b": hi\n\n", *keep_alives, transcript]))
    events = await collect(make_client(idle_timeout=0.6, first_byte_timeout=0.6))
    assert text_of(events) == "Warm start"
    assert isinstance(events[-1], Completed)


async def test_early_break_closes_the_response(
    server: FakeResponsesServer, make_client: ClientFactory
) -> None:
    """A caller that stops reading early frees the connection: the server sees it go."""
    partial = encode_events(answer_events(["first"], end="none")[:-1])
    server.push(SseStream([partial.removesuffix(b"data: [DONE]\n\n"), HANG]))
    async with aclosing(make_client().stream(REQUEST)) as stream:
        async for event in stream:
            if isinstance(event, TextDelta):
                break
    await asyncio.wait_for(server.disconnected.wait(), timeout=10)
    assert server.disconnects == 1


async def test_cancellation_propagates_and_closes_the_response(
    server: FakeResponsesServer, make_client: ClientFactory
) -> None:
    """Cancelling the reading task raises CancelledError, not Failed, and frees the connection."""
    partial = encode_events(answer_events(["first"], end="none")[:-1])
    server.push(SseStream([partial.removesuffix(b"data: [DONE]\n\n"), HANG]))
    got_text = asyncio.Event()

    async def read_all() -> None:
        async with aclosing(make_client().stream(REQUEST)) as stream:
            async for event in stream:
                if isinstance(event, TextDelta):
                    got_text.set()

    task = asyncio.create_task(read_all())
    await got_text.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(server.disconnected.wait(), timeout=10)


async def test_request_shape(server: FakeResponsesServer, make_client: ClientFactory) -> None:
    """The POST carries auth, the whole history in Responses format, hashes, and no store."""
    history = [
        HistoryItem("user", "hi there", speaker="Ann [mod]\r\nX"),
        HistoryItem("assistant", "Hello Ann", item_id="msg_tmp_9", status="completed"),
        HistoryItem("user", "and you?", speaker=""),
        HistoryItem("assistant", "cut", status="incomplete"),
        HistoryItem("user", "long name", speaker="N" * 100),
    ]
    client = make_client()
    request = client.build_request(
        history,
        instructions="Be brief.",
        model="openai/gpt-4o-mini",
        max_output_tokens=300,
        user_key="discord:1234",
        conversation_key="channel:42",
    )
    server.push(SseStream([sse_stream(["ok"])]))
    await collect(client, request)
    [received] = server.requests
    assert received.path == "/api/v1/responses"
    assert received.headers["Authorization"] == f"Bearer {API_KEY}"
    assert received.headers["Accept"] == "text/event-stream"
    body = received.body
    assert body["instructions"] == "Be brief."
    assert (body["model"], body["max_output_tokens"], body["stream"]) == (
        "openai/gpt-4o-mini",
        300,
        True,
    )
    assert "store" not in body
    assert "previous_response_id" not in body
    assert body["user"] == hashlib.sha256(b"discord:1234").hexdigest()
    assert "1234" not in body["prompt_cache_key"]
    texts = [item["content"][0]["text"] for item in body["input"]]
    assert texts == [
        "[Ann mod  X]: hi there",
        "Hello Ann",
        "and you?",
        "cut",
        f"[{'N' * 64}]: long name",
    ]
    user, assistant, _, generated, _ = body["input"]
    assert user == {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": "[Ann mod  X]: hi there"}],
    }
    assert assistant == {
        "type": "message",
        "role": "assistant",
        "id": "msg_tmp_9",
        "status": "completed",
        "content": [{"type": "output_text", "text": "Hello Ann", "annotations": []}],
    }
    assert generated["id"].startswith("msg_")
    assert generated["status"] == "incomplete"


def test_prompt_cache_key_is_stable_per_conversation(make_client: ClientFactory) -> None:
    """The same conversation gets the same cache key; another gets a different one."""
    client = make_client()

    def key(conversation: str) -> str:
        request = client.build_request(
            [],
            instructions="",
            model="m",
            max_output_tokens=16,
            user_key="u",
            conversation_key=conversation,
        )
        return str(request["prompt_cache_key"])

    assert key("a") == key("a") != key("b")
    assert len(key("a")) <= 64


def test_repr_hides_the_key(make_client: ClientFactory) -> None:
    """The API key never shows in repr or str of the client."""
    client = make_client()
    assert API_KEY not in repr(client)
    assert API_KEY not in str(client)


def test_fake_server_scripts_load_from_json(tmp_path: Any) -> None:
    """The standalone server's JSON script format builds the expected scripts."""
    from tests.support.fake_responses import load_scripts

    path = tmp_path / "script.json"
    script: list[dict[str, Any]] = [
        {
            "status": 429,
            "body": {"error": {"code": 429, "message": "x"}},
            "headers": {"Retry-After": "1"},
        },
        {"sse": {"deltas": ["a", "b"], "style": "openai"}},
        {"chunks": ["data: [DONE]\n\n"], "hang": True},
    ]
    path.write_text(json.dumps(script))
    loaded: list[Script] = load_scripts(path)
    assert isinstance(loaded[0], PlainResponse)
    assert loaded[0].headers == {"Retry-After": "1"}
    assert isinstance(loaded[1], SseStream)
    assert loaded[1].steps == [sse_stream(["a", "b"], style="openai")]
    assert isinstance(loaded[2], SseStream)
    assert loaded[2].steps == [b"data: [DONE]\n\n", HANG]


async def test_connect_timeout_when_no_connection_is_free(server: FakeResponsesServer) -> None:
    """Waiting longer than connect_timeout for a connection is a connect-phase timeout."""
    partial = encode_events(answer_events(["busy"], end="none")[:-1])
    server.push(SseStream([partial.removesuffix(b"data: [DONE]\n\n"), HANG]))
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector) as one_connection:
        client = ResponsesClient(
            one_connection, base_url=server.url, api_key=API_KEY, connect_timeout=0.2, max_retries=0
        )
        async with aclosing(client.stream(REQUEST)) as holder:
            first = await anext(holder)
            assert isinstance(first, TextDelta)
            error = failure(await collect(client))
    assert isinstance(error, errors.LLMTimeoutError)
    assert (error.phase, error.seconds) == ("connect", 0.2)


def _options_request(client: ResponsesClient, options: AnswerOptions | None) -> dict[str, Any]:
    """A one-question request with the given answer options."""
    return client.build_request(
        [HistoryItem("user", "What's new?")],
        instructions="Be brief.",
        model="primary/model",
        max_output_tokens=4096,
        user_key="u",
        conversation_key="c",
        options=options,
    )


OPTION_CASES = [
    pytest.param(None, {}, id="none"),
    pytest.param(AnswerOptions(), {}, id="defaults"),
    pytest.param(
        AnswerOptions(reasoning_effort="high"),
        {"reasoning": {"effort": "high", "summary": "auto"}},
        id="reasoning",
    ),
    pytest.param(
        AnswerOptions(reasoning_effort="none"),
        {"reasoning": {"effort": "none"}},
        id="reasoning-none",
    ),
    pytest.param(
        AnswerOptions(web=True, web_max_results=3),
        {"plugins": [{"id": "web", "max_results": 3}]},
        id="web",
    ),
    pytest.param(
        AnswerOptions(fallback_models=("backup/one", "primary/model", "backup/two")),
        {"models": ["primary/model", "backup/one", "backup/two"]},
        id="fallbacks",
    ),
    pytest.param(
        AnswerOptions(
            reasoning_effort="low", web=True, web_max_results=5, fallback_models=("b/one",)
        ),
        {
            "models": ["primary/model", "b/one"],
            "reasoning": {"effort": "low", "summary": "auto"},
            "plugins": [{"id": "web", "max_results": 5}],
        },
        id="all",
    ),
]


@pytest.mark.parametrize(("options", "added"), OPTION_CASES)
async def test_answer_options_reach_the_request_body(
    server: FakeResponsesServer,
    make_client: ClientFactory,
    options: AnswerOptions | None,
    added: dict[str, Any],
) -> None:
    """Each option adds exactly its documented field, after the usual ones, in a fixed order:
    `models` (primary first, never twice), `reasoning` with a summary, the `web` plugin."""
    client = make_client()
    server.push(SseStream([sse_stream(["ok"])]))
    await collect(client, _options_request(client, options))
    body = server.requests[0].body
    usual = ["model", "instructions", "input", "max_output_tokens", "user", "prompt_cache_key"]
    assert list(body) == [*usual, "stream", *added]
    assert {name: body[name] for name in added} == added
    assert body["model"] == "primary/model"


async def test_summary_and_raw_reasoning_are_told_apart(
    server: FakeResponsesServer, make_client: ClientFactory
) -> None:
    """Summary deltas are marked as summary, raw reasoning is not; a reasoning item's start is
    an empty ReasoningDelta; a new summary part is a paragraph break."""
    server.push(
        SseStream(
            [
                sse_stream(
                    ["Answer"],
                    reasoning=["**Plan**", "\n\nLooking it up."],
                    raw_reasoning=["secret chain"],
                )
            ]
        )
    )
    events = await collect(make_client())
    reasoning = [e for e in events if isinstance(e, ReasoningDelta)]
    assert reasoning == [
        ReasoningDelta(""),
        ReasoningDelta("secret chain"),
        ReasoningDelta("**Plan**", summary=True),
        ReasoningDelta("\n\n", summary=True),
        ReasoningDelta("Looking it up.", summary=True),
    ]
    assert text_of(events) == "Answer"


async def test_the_model_that_answered_is_in_the_final_event(
    server: FakeResponsesServer, make_client: ClientFactory
) -> None:
    """A fallback that answered is named by the final event's model, with cached tokens."""
    usage = {
        "input_tokens": 1234,
        "input_tokens_details": {"cached_tokens": 1000},
        "output_tokens": 456,
        "output_tokens_details": {"reasoning_tokens": 300},
        "cost": 0.0012,
    }
    server.push(
        SseStream([sse_stream(["Hi"], model="primary/model", answered_by="b/one", usage=usage)])
    )
    final = (await collect(make_client()))[-1]
    assert isinstance(final, Completed)
    assert final.model == "b/one"
    assert final.usage == Usage(1234, 456, 300, 0.0012, cached_tokens=1000)
