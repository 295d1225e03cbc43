"""Pure parts of the Responses client: the event parser and the request/error helpers."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.core import errors
from bot.core.events import Citation, Completed, Failed, Incomplete, TextDelta, Usage
from bot.core.labels import speaker_label
from bot.core.response_stream import ResponseStreamParser, error_from_payload, parse_usage
from bot.core.responses import http_error, parse_retry_after
from bot.core.sse import ServerSentEvent


def sse(payload: dict[str, Any] | str, event: str | None = None) -> ServerSentEvent:
    """An SSE event carrying a payload (JSON-encoded unless already a string)."""
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return ServerSentEvent(event=event, data=data)


@pytest.mark.parametrize(
    "payload",
    [
        {"type": "response.content_part.delta", "delta": "x"},
        {"type": "response.content_part.delta", "delta": {"text": "x"}},
        {"type": "response.content_part.delta", "part": {"type": "output_text", "text": "x"}},
        {"type": "response.output_text.delta", "delta": "x"},
    ],
)
def test_text_delta_shapes(payload: dict[str, Any]) -> None:
    """Text deltas are read leniently: a string delta, or `text` in `delta` or `part`."""
    assert ResponseStreamParser().on_event(sse(payload)) == [TextDelta("x")]


def test_event_line_names_a_payload_without_type() -> None:
    """When the JSON lacks `type`, the SSE `event:` line names it."""
    parser = ResponseStreamParser()
    assert parser.on_event(sse({"delta": "x"}, event="response.output_text.delta")) == [
        TextDelta("x")
    ]
    [final] = parser.on_event(sse({"message": "bad"}, event="error"))
    assert isinstance(final, Failed)
    assert parser.finished


def test_nothing_after_the_final_event() -> None:
    """Events after the final one are ignored, and finish() cannot add a second final."""
    parser = ResponseStreamParser()
    [final] = parser.on_event(sse({"type": "response.completed", "response": {"model": "m"}}))
    assert final == Completed(model="m")
    assert parser.on_event(sse({"type": "response.output_text.delta", "delta": "late"})) == []
    with pytest.raises(RuntimeError):
        parser.finish()


def test_non_object_json_is_ignored() -> None:
    """A JSON value that is not an object is skipped, not fatal."""
    assert ResponseStreamParser().on_event(sse("[1, 2]")) == []


@pytest.mark.parametrize("data", ["", " ", "\n"])
def test_event_without_data_is_a_keep_alive(data: str) -> None:
    """A bare `data:` line (an empty event, as some proxies send to keep alive) is skipped."""
    parser = ResponseStreamParser()
    assert parser.on_event(sse(data)) == []
    assert not parser.finished


def test_usage_tolerates_missing_and_odd_fields() -> None:
    """Usage reads what is there and defaults the rest."""
    usage = parse_usage({"input_tokens": 3, "output_tokens": True, "cost": "1"})
    assert (usage.input_tokens, usage.output_tokens, usage.cost) == (3, 0, None)
    assert parse_usage(None).reasoning_tokens == 0
    assert parse_usage({"input_tokens_details": {"cached_tokens": "9"}}).cached_tokens == 0


def test_usage_reads_cached_input_tokens() -> None:
    """The prompt-cache share of the input comes from `input_tokens_details.cached_tokens`."""
    usage = parse_usage({"input_tokens": 900, "input_tokens_details": {"cached_tokens": 768}})
    assert (usage.input_tokens, usage.cached_tokens) == (900, 768)


def test_error_payload_prefers_the_top_level() -> None:
    """Message and code come from the top level first, then from `error`."""
    error = error_from_payload({"message": "top", "error": {"message": "inner", "code": 7}})
    assert (error.detail, error.code) == ("top", 7)
    assert error_from_payload({}).detail


def test_retry_after_forms() -> None:
    """Retry-After in seconds or as an HTTP date; junk gives None."""
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    wait = parse_retry_after(later)
    assert wait is not None
    assert 0 < wait <= 30


def test_http_error_with_string_code_and_moderation_reasons() -> None:
    """Error bodies with string codes and 403 metadata map to typed errors."""
    body = json.dumps(
        {"error": {"code": "flagged", "message": "no", "metadata": {"reasons": ["hate", "x"]}}}
    )
    error = http_error(403, body.encode(), retry_after=None)
    assert isinstance(error, errors.ModerationError)
    assert (error.code, error.reason, error.detail) == ("flagged", "hate, x", "no")


def test_http_error_with_odd_bodies() -> None:
    """Non-JSON, JSON without `error`, and boolean codes still give a typed error."""
    assert isinstance(http_error(500, b"\xff oops", None), errors.ServerError)
    assert http_error(429, b"[]", 2.0).retry_after == 2.0
    assert http_error(400, b'{"error": {"code": true}}', None).code is None


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_speaker_label_is_one_safe_line(name: str) -> None:
    """A speaker label has no line breaks or brackets and at most 64 characters."""
    label = speaker_label(name)
    assert not set(label) & set("\r\n[]")
    assert len(label) <= 64
    assert label == label.strip()


STREAM_ERRORS = [
    pytest.param(
        {"type": "error", "code": "rate_limit_exceeded", "message": "Slow down"},
        "The model provider is rate-limited right now; try again in a moment. (Slow down)",
        id="flat-rate-limit",
    ),
    pytest.param(
        {"type": "error", "error": {"code": "context_length_exceeded", "message": "Too long"}},
        "The conversation is too long for this model; use /reset or pick a model with a bigger"
        " context. (Too long)",
        id="nested-context-length",
    ),
    pytest.param(
        {
            "type": "response.failed",
            "response": {"error": {"code": "server_error", "message": "Upstream died"}},
        },
        "The model provider had an error. Please try again. (Upstream died)",
        id="response.failed",
    ),
    pytest.param(
        {"type": "error", "code": "invalid_prompt", "message": "Bad input"},
        "The model service rejected the request as invalid. (Bad input)",
        id="invalid-prompt",
    ),
    pytest.param(
        {"type": "error", "error": {"code": "model_not_found", "message": "No such model"}},
        "That model does not exist on OpenRouter; pick another with /model. (No such model)",
        id="model-not-found",
    ),
    pytest.param(
        {"type": "error", "error": {"code": 502, "message": "Provider returned error"}},
        "The model provider had an error. Please try again. (Provider returned error)",
        id="numeric-code",
    ),
    pytest.param(
        {
            "type": "error",
            "error": {"code": 403, "message": "Flagged", "metadata": {"reasons": ["violence"]}},
        },
        "The request was blocked by moderation: violence. (Flagged)",
        id="moderation-metadata-inside",
    ),
    pytest.param(
        {
            "type": "error",
            "error": {"code": "moderation", "message": "Flagged"},
            "metadata": {"reasons": ["hate", "spam"]},
        },
        "The request was blocked by moderation: hate, spam. (Flagged)",
        id="moderation-metadata-beside",
    ),
    pytest.param(
        {
            "type": "response.failed",
            "response": {"error": {"code": "content_filter", "message": ""}},
        },
        "The request was blocked by the model provider's moderation.",
        id="moderation-without-message",
    ),
    pytest.param(
        {"type": "error", "code": "brand_new", "message": "Something\nodd   happened"},
        "The model's answer broke off with an error. (Something odd happened)",
        id="unknown-code",
    ),
]


@pytest.mark.parametrize(("payload", "line"), STREAM_ERRORS)
def test_stream_errors_say_why(payload: dict[str, Any], line: str) -> None:
    """An error inside a stream shows its code's sentence and the provider's own message."""
    [final] = ResponseStreamParser().on_event(sse(payload))
    assert isinstance(final, Failed)
    assert final.error.user_message == line


HTTP_ERRORS = [
    pytest.param(
        429,
        {"error": {"code": 429, "message": "Rate limit exceeded: free-models-per-day"}},
        "The model provider is rate-limited right now; try again in a moment."
        " (Rate limit exceeded: free-models-per-day)",
        id="429",
    ),
    pytest.param(
        400,
        {"error": {"code": "context_length_exceeded", "message": "Max context is 8192 tokens"}},
        "The conversation is too long for this model; use /reset or pick a model with a bigger"
        " context. (Max context is 8192 tokens)",
        id="400-context-length",
    ),
    pytest.param(
        403,
        {"error": {"code": 403, "message": "Flagged"}, "metadata": {"reasons": ["self-harm"]}},
        "The request was blocked by moderation: self-harm. (Flagged)",
        id="403-metadata-beside",
    ),
    pytest.param(
        502,
        {"error": {"code": 502, "message": ""}},
        "The model provider had an error. Please try again.",
        id="502-without-message",
    ),
    pytest.param(
        502,
        "<html>Bad gateway</html>",
        "The model provider had an error. Please try again.",
        id="html-page-is-not-shown",
    ),
]


@pytest.mark.parametrize(("status", "body", "line"), HTTP_ERRORS)
def test_http_errors_say_why(status: int, body: dict[str, Any] | str, line: str) -> None:
    """An HTTP error shows its status's (or code's) sentence, then the API's `error.message`
    (a body that is not an API error object adds nothing)."""
    raw = body if isinstance(body, str) else json.dumps(body)
    error = http_error(status, raw.encode(), retry_after=None)
    assert error.user_message == line


def test_provider_message_is_one_short_line_without_mentions() -> None:
    """The provider's message is folded, cut to 200 characters, and cannot mention anyone."""
    message = "@everyone look\r\n<@123> and <@&456> and <@!789> @here " + "x" * 400
    [final] = ResponseStreamParser().on_event(
        sse({"type": "error", "code": "server_error", "message": message})
    )
    assert isinstance(final, Failed)
    line = final.error.user_message
    provider_part = line.removeprefix("The model provider had an error. Please try again. (")
    assert len(provider_part.removesuffix(")")) <= errors.PROVIDER_MESSAGE_MAX_CHARS
    assert provider_part.endswith("…)")
    assert "\n" not in line
    assert "\r" not in line
    assert MENTION.search(line) is None


def test_moderation_reasons_cannot_mention_anyone() -> None:
    """Reasons from the API's metadata are made as safe as its message."""
    body = {"error": {"code": 403, "message": "no", "metadata": {"reasons": ["@everyone\n<@1>"]}}}
    error = http_error(403, json.dumps(body).encode(), retry_after=None)
    assert MENTION.search(error.user_message) is None
    assert "\n" not in error.user_message


MENTION = re.compile(r"@(everyone|here)|<@[!&]?\d+>")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("@<>&!12 everyonhr\n\r\u2028\x00x")), max_size=300))
def test_one_line_notice_is_always_safe(text: str) -> None:
    """Whatever the provider writes, the notice is one line of at most 200 characters that
    mentions no one."""
    notice = errors.one_line_notice(text)
    assert len(notice) <= errors.PROVIDER_MESSAGE_MAX_CHARS
    assert len(notice.splitlines()) <= 1
    assert "\x00" not in notice
    assert MENTION.search(notice) is None


@pytest.mark.parametrize("kind", ["response.completed", "response.done"])
def test_a_final_event_with_status_incomplete_is_incomplete(kind: str) -> None:
    """A completed/done event whose response says "incomplete" ends as Incomplete, with the
    reason, model and usage it carries."""
    response = {
        "status": "incomplete",
        "model": "m",
        "incomplete_details": {"reason": "content_filter"},
        "usage": {"input_tokens": 4, "output_tokens": 2},
    }
    parser = ResponseStreamParser()
    assert parser.on_event(sse({"type": kind, "response": response})) == [
        Incomplete("content_filter", model="m", usage=Usage(input_tokens=4, output_tokens=2))
    ]
    assert parser.finished


@pytest.mark.parametrize("kind", ["response.completed", "response.done"])
def test_a_final_event_with_status_failed_is_failed(kind: str) -> None:
    """A completed/done event whose response says "failed" ends as Failed with its error."""
    error = {"code": "rate_limit_exceeded", "message": "Busy"}
    parser = ResponseStreamParser()
    [final] = parser.on_event(sse({"type": kind, "response": {"status": "failed", "error": error}}))
    assert isinstance(final, Failed)
    assert isinstance(final.error, errors.LLMStreamError)
    assert (final.error.code, final.error.provider_message) == ("rate_limit_exceeded", "Busy")
    assert parser.finished


def _cite(url: str, title: str = "") -> dict[str, Any]:
    """A url_citation annotation."""
    return {"type": "url_citation", "url": url, "title": title, "start_index": 0, "end_index": 1}


def _message(*annotations: dict[str, Any]) -> dict[str, Any]:
    """A finished assistant message item whose text carries these annotations."""
    part = {"type": "output_text", "text": "x", "annotations": list(annotations)}
    return {"type": "message", "id": "msg_1", "role": "assistant", "content": [part]}


CITATION_SOURCES = [
    pytest.param(
        {"type": "response.output_text.annotation.added", "annotation": _cite("https://a.org")},
        [Citation("https://a.org")],
        id="annotation.added",
    ),
    pytest.param(
        {
            "type": "response.output_item.done",
            "output_index": 0,
            "item": _message(_cite("https://b.org", "B")),
        },
        [Citation("https://b.org", "B")],
        id="output_item.done",
    ),
    pytest.param(
        {
            "type": "response.output_item.done",
            "output_index": 0,
            "item": {"type": "reasoning", "content": [{"annotations": [_cite("https://r.org")]}]},
        },
        [],
        id="not-a-message",
    ),
    pytest.param(
        {"type": "response.completed", "response": {"output": [_message(_cite("https://c.org"))]}},
        [Citation("https://c.org"), Completed(message_id="msg_1")],
        id="response.completed",
    ),
    pytest.param(
        {
            "type": "response.incomplete",
            "response": {
                "output": [_message(_cite("https://d.org"))],
                "incomplete_details": {"reason": "max_output_tokens"},
            },
        },
        [Citation("https://d.org"), Incomplete("max_output_tokens", message_id="msg_1")],
        id="response.incomplete",
    ),
    pytest.param(
        {
            "type": "response.output_item.done",
            "item": _message(
                _cite("https://e.org"),
                _cite("https://e.org", "twice"),
                {"type": "file_citation", "file_id": "f"},
                _cite("javascript:alert(1)"),
                _cite("https://x.org/a b"),
                _cite("https://x.org/<@123>"),
                _cite("https://x.org/" + "y" * 600),
                _cite(""),
            ),
        },
        [Citation("https://e.org")],
        id="duplicates-and-odd-urls-dropped",
    ),
]


@pytest.mark.parametrize(("payload", "expected"), CITATION_SOURCES)
def test_citations_wherever_the_stream_carries_them(
    payload: dict[str, Any], expected: list[Any]
) -> None:
    """url_citation annotations are read from annotation.added, a finished message item and
    the final response's output; only plain http(s) links count, each once."""
    assert ResponseStreamParser().on_event(sse(payload)) == expected


def test_each_url_is_cited_once_per_answer() -> None:
    """A URL seen in the annotation event, again in the finished item and again in the final
    response yields one Citation; a new URL in the final response still counts."""
    parser = ResponseStreamParser()
    added = {"type": "response.output_text.annotation.added", "annotation": _cite("https://a.org")}
    done = {"type": "response.output_item.done", "item": _message(_cite("https://a.org"))}
    final_output = [_message(_cite("https://a.org"), _cite("https://b.org"))]
    completed = {"type": "response.completed", "response": {"output": final_output}}
    events = [
        event for payload in (added, done, completed) for event in parser.on_event(sse(payload))
    ]
    assert [e for e in events if isinstance(e, Citation)] == [
        Citation("https://a.org"),
        Citation("https://b.org"),
    ]
    assert isinstance(events[-1], Completed)
