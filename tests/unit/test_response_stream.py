"""Pure parts of the Responses client: the event parser and the request/error helpers."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.core import errors
from bot.core.events import Completed, Failed, TextDelta
from bot.core.response_stream import ResponseStreamParser, error_from_payload, parse_usage
from bot.core.responses import http_error, parse_retry_after, speaker_label
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
