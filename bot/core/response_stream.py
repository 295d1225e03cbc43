"""Turns decoded Responses API stream events into the bot's typed events.

Pure and I/O-free: `ResponseStreamParser.on_event` takes one decoded SSE event and returns the
typed events it stands for; `finish()` says how a stream that ended without a final event ends.
Both vocabularies are accepted: the OpenAI-compatible names OpenRouter really sends
(`response.output_text.delta`, `response.completed`) and the names in OpenRouter's docs example
(`response.content_part.delta`, `response.done`). Unknown events and item types are ignored.
Cited web sources are read wherever the stream carries them (annotation events, finished
message items, the final response's output); each URL becomes one `Citation` per answer.
A `function_call` item is collected from its argument deltas and becomes one `FunctionCall`
when it is done (or, failing that, from the final response's output).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from bot.core.errors import LLMError, LLMStreamError
from bot.core.events import (
    Citation,
    Completed,
    Failed,
    FinalEvent,
    FunctionCall,
    Incomplete,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
    Usage,
)
from bot.core.sse import ServerSentEvent

log = logging.getLogger(__name__)

DONE_MARKER = "[DONE]"
MAX_CITATION_URL_CHARS = 500


def _mapping(value: object) -> Mapping[str, Any]:
    """The value if it is a JSON object, else an empty mapping."""
    return value if isinstance(value, Mapping) else {}


def _text(value: object) -> str:
    """The value if it is a string, else an empty string."""
    return value if isinstance(value, str) else ""


def _int(value: object) -> int:
    """The value if it is an integer (not a bool), else 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def parse_usage(raw: object) -> Usage:
    """Read token counts, reasoning and cached tokens and OpenRouter's cost from a `usage`."""
    usage = _mapping(raw)
    cost = usage.get("cost")
    return Usage(
        input_tokens=_int(usage.get("input_tokens")),
        output_tokens=_int(usage.get("output_tokens")),
        reasoning_tokens=_int(_mapping(usage.get("output_tokens_details")).get("reasoning_tokens")),
        cost=float(cost) if isinstance(cost, int | float) and not isinstance(cost, bool) else None,
        cached_tokens=_int(_mapping(usage.get("input_tokens_details")).get("cached_tokens")),
    )


def error_code(value: object) -> str | int | None:
    """An API error code: a string or an integer (not a bool), else None."""
    return value if isinstance(value, str | int) and not isinstance(value, bool) else None


def moderation_reason(payload: Mapping[str, Any]) -> str:
    """Why moderation blocked a request, from `metadata` beside `error` or inside it."""
    for holder in (_mapping(payload.get("error")), payload):
        metadata = _mapping(holder.get("metadata"))
        reasons = metadata.get("reasons")
        if isinstance(reasons, list):
            joined = ", ".join(str(reason) for reason in reasons if reason)
            if joined:
                return joined
        if _text(metadata.get("reason")):
            return _text(metadata.get("reason"))
    return ""


def error_from_payload(payload: Mapping[str, Any]) -> LLMStreamError:
    """An in-stream error: message and code read from the top level, then from `error`;
    moderation reasons from `metadata` at either level."""
    nested = _mapping(payload.get("error"))
    message = _text(payload.get("message")) or _text(nested.get("message"))
    code = error_code(payload.get("code"))
    if code is None:
        code = error_code(nested.get("code"))
    return LLMStreamError(
        message or "the stream reported an error",
        code=code,
        provider_message=message,
        reason=moderation_reason(payload),
    )


def citation_url(annotation: Mapping[str, Any]) -> str:
    """The URL of a url_citation annotation if it is a plain http(s) link, else ""."""
    url = _text(annotation.get("url"))
    if annotation.get("type") != "url_citation" or len(url) > MAX_CITATION_URL_CHARS:
        return ""
    if not url.lower().startswith(("https://", "http://")):
        return ""
    if any(ch.isspace() or ch in "<>" for ch in url):  # would break the `<url>` sources line
        return ""
    return url


def _delta_text(payload: Mapping[str, Any]) -> str:
    """Text of a delta event: `delta` as a string, or inside `delta`/`part` as `text`."""
    delta = payload.get("delta")
    if isinstance(delta, str):
        return delta
    return _text(_mapping(delta).get("text")) or _text(_mapping(payload.get("part")).get("text"))


class _PendingCall:
    """A function_call item being streamed: its names and its argument text so far."""

    def __init__(self, item: Mapping[str, Any], output_index: object) -> None:
        self.item_id = _text(item.get("id"))
        self.output_index = output_index
        self.call_id = _text(item.get("call_id"))
        self.name = _text(item.get("name"))
        self.parts: list[str] = [_text(item.get("arguments"))]
        self.final_arguments: str | None = None

    def matches(self, payload: Mapping[str, Any]) -> bool:
        """Whether an argument event (by `item_id`, else `output_index`) is about this call."""
        item_id = _text(payload.get("item_id"))
        if item_id and self.item_id:
            return item_id == self.item_id
        return payload.get("output_index") == self.output_index

    def call(self, item: Mapping[str, Any]) -> FunctionCall:
        """The finished call; the finished item's fields win over what was streamed."""
        streamed = self.final_arguments if self.final_arguments is not None else "".join(self.parts)
        return FunctionCall(
            call_id=_text(item.get("call_id")) or self.call_id,
            name=_text(item.get("name")) or self.name,
            arguments=_text(item.get("arguments")) or streamed,
            item_id=_text(item.get("id")) or self.item_id,
        )


class ResponseStreamParser:
    """State of one streamed response: open output items, the message id, the model."""

    def __init__(self) -> None:
        self.finished = False
        self.message_id: str | None = None
        self.model: str | None = None
        self._open_items: set[str] = set()
        self._done_items: set[str] = set()
        self._cited: set[str] = set()
        self._summarised = False
        self._calls: list[_PendingCall] = []
        self._called: set[str] = set()
        self._handlers: dict[str, Callable[[Mapping[str, Any]], list[StreamEvent]]] = {
            "response.output_text.delta": self._on_text_delta,
            "response.content_part.delta": self._on_text_delta,
            "response.reasoning_text.delta": self._on_reasoning_delta,
            "response.reasoning_summary_text.delta": self._on_summary_delta,
            "response.reasoning_summary_part.added": self._on_summary_part,
            "response.output_text.annotation.added": self._on_annotation,
            "response.function_call_arguments.delta": self._on_arguments_delta,
            "response.function_call_arguments.done": self._on_arguments_done,
            "response.output_item.added": self._on_item_added,
            "response.output_item.done": self._on_item_done,
            "response.created": self._on_response_info,
            "response.in_progress": self._on_response_info,
            "response.completed": self._on_completed,
            "response.done": self._on_completed,
            "response.incomplete": self._on_incomplete,
            "response.failed": self._on_failed,
            "error": self._on_error,
        }

    def on_event(self, sse: ServerSentEvent) -> list[StreamEvent]:
        """The typed events one SSE event stands for (a final one sets `finished`)."""
        data = sse.data.strip()
        if self.finished or not data:  # an event without data is only a keep-alive
            return []
        if data == DONE_MARKER:
            return [self.finish()]
        try:
            payload = json.loads(data)
        except ValueError:
            return [self.fail(LLMStreamError("the stream sent an event that is not JSON"))]
        if not isinstance(payload, dict):
            log.debug("ignoring non-object stream event")
            return []
        kind = _text(payload.get("type")) or sse.event or ""
        handler = self._handlers.get(kind)
        return handler(payload) if handler else []

    def finish(self) -> FinalEvent:
        """The final event of a stream that ended (EOF or [DONE]) without a final event."""
        if self.finished:
            raise RuntimeError("the stream already has its final event")
        self.finished = True
        if self._open_items and self._open_items <= self._done_items:
            return Completed(message_id=self.message_id, model=self.model)
        return Failed(
            LLMStreamError("the stream ended early, before the answer was complete"),
            message_id=self.message_id,
        )

    def fail(self, error: LLMError) -> Failed:
        """End the stream with an error; it is the final event."""
        self.finished = True
        return Failed(error, message_id=self.message_id)

    def _on_text_delta(self, payload: Mapping[str, Any]) -> list[StreamEvent]:
        """Visible answer text."""
        text = _delta_text(payload)
        return [TextDelta(text)] if text else []

    def _on_reasoning_delta(self, payload: Mapping[str, Any]) -> list[StreamEvent]:
        """Raw reasoning text, never shown and never part of the answer."""
        text = _delta_text(payload)
        return [ReasoningDelta(text)] if text else []

    def _on_summary_delta(self, payload: Mapping[str, Any]) -> list[StreamEvent]:
        """Reasoning summary text, shown as a status while the model thinks."""
        text = _delta_text(payload)
        if not text:
            return []
        self._summarised = True
        return [ReasoningDelta(text, summary=True)]

    def _on_summary_part(self, payload: Mapping[str, Any]) -> list[StreamEvent]:
        """A new summary paragraph begins: separated from the one before it."""
        return [ReasoningDelta("\n\n", summary=True)] if self._summarised else []

    def _on_annotation(self, payload: Mapping[str, Any]) -> list[StreamEvent]:
        """A url_citation annotation becomes a Citation."""
        return self._citations([payload.get("annotation")])

    def _citations(self, annotations: object) -> list[StreamEvent]:
        """A Citation for each url_citation annotation whose URL was not cited before."""
        found: list[StreamEvent] = []
        for raw in annotations if isinstance(annotations, list) else []:
            annotation = _mapping(raw)
            url = citation_url(annotation)
            if url and url not in self._cited:
                self._cited.add(url)
                found.append(Citation(url=url, title=_text(annotation.get("title"))))
        return found

    def _item_citations(self, item: object) -> list[StreamEvent]:
        """Citations in the annotations of a finished message item's text parts."""
        item_map = _mapping(item)
        if item_map.get("type") != "message":
            return []
        content = item_map.get("content")
        found: list[StreamEvent] = []
        for part in content if isinstance(content, list) else []:
            found += self._citations(_mapping(part).get("annotations"))
        return found

    def _output_citations(self, response: Mapping[str, Any]) -> list[StreamEvent]:
        """Citations in the message items of a final response's `output`."""
        outputs = response.get("output")
        found: list[StreamEvent] = []
        for item in outputs if isinstance(outputs, list) else []:
            found += self._item_citations(item)
        return found

    def _item_key(self, payload: Mapping[str, Any]) -> str:
        """Identify an output item by its id, else by its output index."""
        item = _mapping(payload.get("item"))
        return _text(item.get("id")) or f"#{payload.get('output_index')}"

    def _note_message(self, payload: Mapping[str, Any]) -> None:
        """Remember the id of an assistant message item."""
        item = _mapping(payload.get("item"))
        if item.get("type") == "message" and _text(item.get("id")):
            self.message_id = _text(item.get("id"))

    def _on_item_added(self, payload: Mapping[str, Any]) -> list[StreamEvent]:
        """An output item (message, reasoning, tool call, ...) began; a reasoning item says
        that the model thinks, even before (or without) any reasoning text."""
        self._open_items.add(self._item_key(payload))
        self._note_message(payload)
        item = _mapping(payload.get("item"))
        if item.get("type") == "function_call":
            self._calls.append(_PendingCall(item, payload.get("output_index")))
        return [ReasoningDelta("")] if item.get("type") == "reasoning" else []

    def _on_item_done(self, payload: Mapping[str, Any]) -> list[StreamEvent]:
        """An output item finished."""
        key = self._item_key(payload)
        self._open_items.add(key)
        self._done_items.add(key)
        self._note_message(payload)
        item = _mapping(payload.get("item"))
        if item.get("type") == "function_call":
            return self._finished_call(item, payload.get("output_index"))
        return self._item_citations(item)

    def _pending_call(self, payload: Mapping[str, Any]) -> _PendingCall | None:
        """The streaming call an argument event belongs to, if known."""
        return next((call for call in self._calls if call.matches(payload)), None)

    def _on_arguments_delta(self, payload: Mapping[str, Any]) -> list[StreamEvent]:
        """More argument text of a function call; never visible text."""
        call = self._pending_call(payload)
        delta = payload.get("delta")
        if call is not None and isinstance(delta, str):
            call.parts.append(delta)
        return []

    def _on_arguments_done(self, payload: Mapping[str, Any]) -> list[StreamEvent]:
        """A function call's whole argument text."""
        call = self._pending_call(payload)
        if call is not None and isinstance(payload.get("arguments"), str):
            call.final_arguments = payload["arguments"]
        return []

    def _finished_call(self, item: Mapping[str, Any], output_index: object) -> list[StreamEvent]:
        """A FunctionCall for a finished function_call item, once per call id."""
        lookup = {"item_id": _text(item.get("id")), "output_index": output_index}
        pending = self._pending_call(lookup) or _PendingCall(item, output_index)
        call = pending.call(item)
        if not call.call_id or not call.name or call.call_id in self._called:
            return []
        self._called.add(call.call_id)
        return [call]

    def _output_calls(self, response: Mapping[str, Any]) -> list[StreamEvent]:
        """Calls in a final response's `output` that no `output_item.done` announced."""
        outputs = response.get("output")
        found: list[StreamEvent] = []
        for raw in outputs if isinstance(outputs, list) else []:
            item = _mapping(raw)
            if item.get("type") == "function_call":
                found += self._finished_call(item, None)
        return found

    def _on_response_info(self, payload: Mapping[str, Any]) -> list[StreamEvent]:
        """Remember the model named by response.created / in_progress."""
        self._read_response(payload)
        return []

    def _read_response(self, payload: Mapping[str, Any]) -> Mapping[str, Any]:
        """The `response` object, after noting its model and assistant message id."""
        response = _mapping(payload.get("response"))
        self.model = _text(response.get("model")) or self.model
        outputs = response.get("output")
        for item in outputs if isinstance(outputs, list) else []:
            item_map = _mapping(item)
            if item_map.get("type") == "message" and _text(item_map.get("id")):
                self.message_id = _text(item_map.get("id"))
        return response

    def _on_completed(self, payload: Mapping[str, Any]) -> list[StreamEvent]:
        """response.completed / response.done; a `response.status` of "incomplete" or "failed"
        is handled as that status, not as a normal end."""
        status = _mapping(payload.get("response")).get("status")
        if status == "incomplete":
            return self._on_incomplete(payload)
        if status == "failed":
            return self._on_failed(payload)
        response = self._read_response(payload)
        self.finished = True
        usage = parse_usage(response.get("usage"))
        completed = Completed(message_id=self.message_id, model=self.model, usage=usage)
        return [*self._output_citations(response), *self._output_calls(response), completed]

    def _on_incomplete(self, payload: Mapping[str, Any]) -> list[StreamEvent]:
        """response.incomplete, with the reason it stopped."""
        response = self._read_response(payload)
        self.finished = True
        reason = _text(_mapping(response.get("incomplete_details")).get("reason")) or "unknown"
        usage = parse_usage(response.get("usage"))
        incomplete = Incomplete(reason, message_id=self.message_id, model=self.model, usage=usage)
        return [*self._output_citations(response), incomplete]

    def _on_failed(self, payload: Mapping[str, Any]) -> list[StreamEvent]:
        """response.failed, with response.error."""
        response = self._read_response(payload)
        error = {"error": response.get("error"), "metadata": response.get("metadata")}
        return [*self._output_citations(response), self.fail(error_from_payload(error))]

    def _on_error(self, payload: Mapping[str, Any]) -> list[StreamEvent]:
        """A flat or nested `error` event."""
        return [self.fail(error_from_payload(payload))]
