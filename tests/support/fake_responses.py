"""A scripted stand-in for OpenRouter's Responses endpoint, on 127.0.0.1 at a free port.

Each request takes the next script from a queue: a `PlainResponse` (an HTTP error, or a 2xx
body that is not SSE) or an `SseStream` (a 200 whose body is given as byte chunks, with `Wait`
steps the test releases through an asyncio.Event, `HANG` to stall forever, `ABORT` to cut the
connection). Every request's headers and JSON body are recorded in `.requests`.
GET /models answers OpenRouter's model list shape with the ids in `.models`, each with
`architecture.input_modalities` when `.modalities` names it and `context_length` when
`.context_lengths` does.

    async with FakeResponsesServer([SseStream([sse_stream(["Hel", "lo"])])]) as server:
        client = ResponsesClient(session, base_url=server.url, api_key="k")

`sse_stream()` builds realistic transcripts in three styles: "openrouter" (data-only lines,
keep-alive comments, `[DONE]`), "openai" (`event:` lines, no `[DONE]`) and "docs" (the
`response.content_part.delta` / `response.done` names of OpenRouter's docs example).

Run standalone with `python -m tests.support.fake_responses SCRIPT.json [--port N]`: it prints
its base URL on the first line of stdout and serves until killed (see `load_scripts`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from aiohttp import web

Style = Literal["openrouter", "openai", "docs"]
End = Literal["completed", "incomplete", "failed", "none"]


@dataclass(frozen=True)
class Wait:
    """A step that pauses the response until the test sets `event`."""

    event: asyncio.Event


@dataclass(frozen=True)
class Delay:
    """A step that paces the stream by real time (for realistic demos and keep-alive pacing)."""

    seconds: float


@dataclass(frozen=True)
class Hang:
    """A step that stalls forever (until the client goes away)."""


@dataclass(frozen=True)
class Abort:
    """A step that cuts the TCP connection mid-response."""


HANG = Hang()
ABORT = Abort()
Step = bytes | Wait | Delay | Hang | Abort


@dataclass
class PlainResponse:
    """A whole response at once: an HTTP error, or a 2xx body that is not SSE."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    hold: Wait | Hang | None = None


@dataclass
class SseStream:
    """A streamed response: `steps` are byte chunks written one by one, or pauses."""

    steps: Sequence[Step]
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "text/event-stream"
    hold: Wait | Hang | None = None


Script = PlainResponse | SseStream


@dataclass
class RecordedRequest:
    """What the server received: method, path, headers, the JSON body (None if not JSON) and
    the body's bytes as sent."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    raw: bytes = b""


def error_response(
    status: int,
    message: str = "error",
    *,
    code: int | str | None = None,
    metadata: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> PlainResponse:
    """An OpenRouter-style error: `{"error": {"code", "message", "metadata"?}}`."""
    error: dict[str, Any] = {"code": status if code is None else code, "message": message}
    if metadata is not None:
        error["metadata"] = metadata
    body = json.dumps({"error": error}).encode()
    return PlainResponse(status, body, headers=dict(headers or {}))


def split_bytes(data: bytes, positions: Iterable[int]) -> list[bytes]:
    """Cut `data` at the given byte positions (out-of-range and duplicate cuts are dropped)."""
    cuts = sorted({p for p in positions if 0 < p < len(data)})
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in pairwise(bounds)]


def encode_events(payloads: Sequence[dict[str, Any]], *, style: Style = "openrouter") -> bytes:
    """Frame event payloads as SSE in a style (sequence numbers added, [DONE] when it fits)."""
    out: list[str] = []
    if style == "openrouter":
        out.append(": OPENROUTER PROCESSING\n\n")
    for number, payload in enumerate(payloads):
        numbered = {**payload, "sequence_number": number}
        data = json.dumps(numbered, ensure_ascii=False)
        if style == "openai":
            out.append(f"event: {payload['type']}\ndata: {data}\n\n")
        else:
            out.append(f"data: {data}\n\n")
    if style != "openai":
        out.append("data: [DONE]\n\n")
    return "".join(out).encode()


def _message_item(message_id: str, status: str, text: str) -> dict[str, Any]:
    """An assistant output message item."""
    content = [{"type": "output_text", "text": text, "annotations": []}] if text else []
    return {
        "type": "message",
        "id": message_id,
        "role": "assistant",
        "status": status,
        "content": content,
    }


def default_usage() -> dict[str, Any]:
    """The usage a scripted answer reports unless told otherwise (a fresh dict each time)."""
    return {
        "input_tokens": 12,
        "output_tokens": 5,
        "total_tokens": 17,
        "output_tokens_details": {"reasoning_tokens": 2},
        "cost": 0.00012,
    }


def _response(
    status: str,
    model: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None = None,
    **extra: Any,
) -> dict:
    """The `response` object carried by response.* events."""
    body = {"id": "gen-123", "object": "response", "status": status, "model": model}
    return {**body, "output": output, "usage": usage or default_usage(), **extra}


def url_citation(url: str, title: str = "") -> dict[str, Any]:
    """A url_citation annotation as OpenRouter's web plugin sends it (flat)."""
    return {"type": "url_citation", "url": url, "title": title, "start_index": 0, "end_index": 1}


def answer_events(
    deltas: Sequence[str],
    *,
    vocabulary: Literal["responses", "docs"] = "responses",
    message_id: str = "msg_tmp_abc123",
    model: str = "openai/gpt-4o-mini",
    end: End = "completed",
    reasoning: Sequence[str] = (),
    raw_reasoning: Sequence[str] = (),
    citations: Sequence[tuple[str, str]] = (),
    answered_by: str | None = None,
    usage: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Event payloads of one answer: created, reasoning, message item, deltas, citations (as
    annotation events), final event. `reasoning` are summary deltas, `raw_reasoning` raw
    reasoning deltas; `answered_by` is the final response's model (a fallback that answered)."""
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": _response("in_progress", model, [])}
    ]
    if reasoning or raw_reasoning:
        events += _reasoning_events(reasoning, raw_reasoning)
    index = 1 if reasoning or raw_reasoning else 0
    item_ref = {"item_id": message_id, "output_index": index, "content_index": 0}
    events.append(
        {
            "type": "response.output_item.added",
            "output_index": index,
            "item": _message_item(message_id, "in_progress", ""),
        }
    )
    delta_type = (
        "response.output_text.delta"
        if vocabulary == "responses"
        else ("response.content_part.delta")
    )
    events += [{"type": delta_type, **item_ref, "delta": d} for d in deltas]
    events += [
        {"type": "response.output_text.annotation.added", **item_ref, "annotation": a}
        for a in (url_citation(url, title) for url, title in citations)
    ]
    text = "".join(deltas)
    status = "incomplete" if end == "incomplete" else "completed"
    done_item = _message_item(message_id, status, text)
    events.append({"type": "response.output_item.done", "output_index": index, "item": done_item})
    events += _final_events(end, vocabulary, answered_by or model, done_item, usage)
    return events


def _reasoning_events(summary: Sequence[str], raw: Sequence[str]) -> list[dict[str, Any]]:
    """A reasoning item with raw reasoning deltas and then summary deltas (one summary part
    per delta that starts with "\n\n"), as reasoning models stream it."""
    item = {"type": "reasoning", "id": "rs_tmp_1", "summary": []}
    ref = {"item_id": "rs_tmp_1", "output_index": 0}
    events: list[dict[str, Any]] = [
        {"type": "response.output_item.added", "output_index": 0, "item": item}
    ]
    events += [{"type": "response.reasoning_text.delta", **ref, "delta": d} for d in raw]
    part = -1
    for delta in summary:
        text = delta
        if part < 0 or delta.startswith("\n\n"):
            part += 1
            added = {"type": "response.reasoning_summary_part.added", **ref, "summary_index": part}
            events.append({**added, "part": {"type": "summary_text", "text": ""}})
            text = delta.removeprefix("\n\n")
        kind = "response.reasoning_summary_text.delta"
        events.append({"type": kind, **ref, "summary_index": part, "delta": text})
    events.append({"type": "response.output_item.done", "output_index": 0, "item": item})
    return events


def _final_events(
    end: End,
    vocabulary: str,
    model: str,
    item: dict[str, Any],
    usage: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The closing event for each way an answer can end."""
    if end == "none":
        return []
    if end == "incomplete":
        details = {"reason": "max_output_tokens"}
        response = _response("incomplete", model, [item], usage, incomplete_details=details)
        return [{"type": "response.incomplete", "response": response}]
    if end == "failed":
        error = {"code": "server_error", "message": "provider exploded"}
        return [
            {"type": "response.failed", "response": _response("failed", model, [], error=error)}
        ]
    final_type = "response.completed" if vocabulary == "responses" else "response.done"
    return [{"type": final_type, "response": _response("completed", model, [item], usage)}]


@dataclass(frozen=True)
class ScriptedCall:
    """A function call a scripted answer makes: its arguments streamed as `chunks`."""

    call_id: str
    name: str
    chunks: Sequence[str]
    item_id: str = ""

    @property
    def arguments(self) -> str:
        """The whole argument text."""
        return "".join(self.chunks)

    def item(self, status: str) -> dict[str, Any]:
        """The function_call output item, with its arguments once it is done."""
        arguments = self.arguments if status == "completed" else ""
        return {
            "type": "function_call",
            "id": self.item_id or f"fc_{self.call_id}",
            "call_id": self.call_id,
            "name": self.name,
            "arguments": arguments,
            "status": status,
        }


def tool_call_events(
    calls: Sequence[ScriptedCall],
    *,
    text: Sequence[str] = (),
    message_id: str = "msg_tmp_tools",
    model: str = "openai/gpt-4o-mini",
) -> list[dict[str, Any]]:
    """Event payloads of a round that calls tools: optional text first (a message item), then
    each call's item, argument deltas and `.done` events, then response.completed."""
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": _response("in_progress", model, [])}
    ]
    output: list[dict[str, Any]] = []
    if text:
        ref = {"item_id": message_id, "output_index": 0, "content_index": 0}
        events.append(
            {
                "type": "response.output_item.added",
                "output_index": 0,
                "item": _message_item(message_id, "in_progress", ""),
            }
        )
        events += [{"type": "response.output_text.delta", **ref, "delta": d} for d in text]
        done = _message_item(message_id, "completed", "".join(text))
        events.append({"type": "response.output_item.done", "output_index": 0, "item": done})
        output.append(done)
    for call in calls:
        index = len(output)
        item_id = call.item("in_progress")["id"]
        ref = {"item_id": item_id, "output_index": index}
        events.append(
            {
                "type": "response.output_item.added",
                "output_index": index,
                "item": call.item("in_progress"),
            }
        )
        events += [
            {"type": "response.function_call_arguments.delta", **ref, "delta": chunk}
            for chunk in call.chunks
        ]
        events.append(
            {"type": "response.function_call_arguments.done", **ref, "arguments": call.arguments}
        )
        events.append(
            {
                "type": "response.output_item.done",
                "output_index": index,
                "item": call.item("completed"),
            }
        )
        output.append(call.item("completed"))
    events.append({"type": "response.completed", "response": _response("completed", model, output)})
    return events


def tool_call_stream(
    calls: Sequence[ScriptedCall], *, text: Sequence[str] = (), message_id: str = "msg_tmp_tools"
) -> SseStream:
    """A whole streamed round that calls tools (see `tool_call_events`)."""
    return SseStream([encode_events(tool_call_events(calls, text=text, message_id=message_id))])


def sse_stream(
    deltas: Sequence[str],
    *,
    style: Style = "openrouter",
    message_id: str = "msg_tmp_abc123",
    model: str = "openai/gpt-4o-mini",
    end: End = "completed",
    reasoning: Sequence[str] = (),
    **extra: Any,
) -> bytes:
    """A realistic whole SSE transcript of one answer made of `deltas` (`extra`: the other
    options of `answer_events`)."""
    vocabulary: Literal["responses", "docs"] = "docs" if style == "docs" else "responses"
    events = answer_events(
        deltas,
        vocabulary=vocabulary,
        message_id=message_id,
        model=model,
        end=end,
        reasoning=reasoning,
        **extra,
    )
    return encode_events(events, style=style)


class FakeResponsesServer:
    """The scripted server; use as `async with`. `.url` is the base URL to give the client."""

    def __init__(
        self, scripts: Iterable[Script] = (), *, port: int = 0, models: Iterable[str] = ()
    ) -> None:
        self.scripts: deque[Script] = deque(scripts)
        self.models: list[str] = list(models)
        self.modalities: dict[str, list[str]] = {}
        self.context_lengths: dict[str, int] = {}
        self.api_key: str | None = None
        """When set, GET /key answers 401 to any other bearer key."""
        self.key_limit: float | None = None
        self.key_usage = 0.0
        self.requests: list[RecordedRequest] = []
        self.disconnects = 0
        self.disconnected = asyncio.Event()
        self._port = port
        self._runner: web.AppRunner | None = None
        self.url = ""

    def push(self, *scripts: Script) -> None:
        """Queue more scripts, served in order."""
        self.scripts.extend(scripts)

    def reset(self, scripts: Iterable[Script] = ()) -> None:
        """Forget requests and disconnects and replace the queue (one server, many examples)."""
        self.scripts = deque(scripts)
        self.requests.clear()
        self.disconnects = 0
        self.disconnected = asyncio.Event()

    async def __aenter__(self) -> FakeResponsesServer:
        app = web.Application()
        app.router.add_post("/api/v1/responses", self._handle)
        app.router.add_get("/api/v1/models", self._list_models)
        app.router.add_get("/api/v1/key", self._key)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self._port)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/api/v1"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _list_models(self, request: web.Request) -> web.Response:
        """GET /models: OpenRouter's list shape, `{"data": [{"id": ...}, ...]}` from `.models`
        (with `architecture.input_modalities` from `.modalities` and `context_length` from
        `.context_lengths`)."""
        data: list[dict[str, Any]] = []
        for name in self.models:
            entry: dict[str, Any] = {"id": name}
            if name in self.modalities:
                entry["architecture"] = {"input_modalities": self.modalities[name]}
            if name in self.context_lengths:
                entry["context_length"] = self.context_lengths[name]
            data.append(entry)
        return web.json_response({"data": data})

    async def _key(self, request: web.Request) -> web.Response:
        """GET /key: OpenRouter's shape (`data.limit`, `data.usage`, `data.limit_remaining`)."""
        given = request.headers.get("Authorization", "")
        if self.api_key is not None and given != f"Bearer {self.api_key}":
            return web.json_response(
                {"error": {"code": 401, "message": "No auth credentials found"}}, status=401
            )
        limit = self.key_limit
        remaining = None if limit is None else limit - self.key_usage
        data = {
            "label": "sk-or-v1-tes...st",
            "limit": limit,
            "usage": self.key_usage,
            "limit_remaining": remaining,
            "is_free_tier": False,
        }
        return web.json_response({"data": data})

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        """Record the request and play the next script."""
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        self.requests.append(
            RecordedRequest(request.method, request.path, dict(request.headers), body, raw)
        )
        if not self.scripts:
            return web.json_response(
                {"error": {"code": 418, "message": "no script left"}}, status=418
            )
        script = self.scripts.popleft()
        try:
            await _pause(script.hold)
            if isinstance(script, PlainResponse):
                return web.Response(
                    status=script.status,
                    body=script.body,
                    headers={**script.headers, "Content-Type": script.content_type},
                )
            return await self._play_stream(request, script)
        except (asyncio.CancelledError, ConnectionError):
            self._note_disconnect()
            raise

    async def _play_stream(self, request: web.Request, script: SseStream) -> web.StreamResponse:
        """Write the stream's steps in order."""
        response = web.StreamResponse(status=script.status, headers=script.headers)
        response.content_type = script.content_type
        await response.prepare(request)
        for step in script.steps:
            if isinstance(step, bytes):
                await response.write(step)
            elif isinstance(step, Abort):
                assert request.transport is not None
                request.transport.abort()
                return response
            else:
                await _pause(step)
        await response.write_eof()
        return response

    def _note_disconnect(self) -> None:
        """Count a client that went away mid-response."""
        self.disconnects += 1
        self.disconnected.set()


async def _pause(step: Wait | Delay | Hang | None) -> None:
    """Wait for a Wait step's event, a Delay's seconds, or forever for HANG."""
    if isinstance(step, Wait):
        await step.event.wait()
    elif isinstance(step, Delay):
        await asyncio.sleep(step.seconds)
    elif isinstance(step, Hang):
        await asyncio.get_running_loop().create_future()


def load_scripts(path: Path) -> list[Script]:
    """Scripts from a JSON list; each entry is one of:

    {"status": 429, "body": {...} or "text", "headers": {...}, "content_type": "..."}
    {"sse": {"deltas": [...], "style": "openrouter", "end": "completed", ...}, "hang": false}
    {"chunks": ["data: ...\\n\\n", ...], "hang": false}
    """
    return [_script_from_json(entry) for entry in json.loads(path.read_text(encoding="utf-8"))]


def _script_from_json(entry: dict[str, Any]) -> Script:
    """One script from its JSON description."""
    if "status" in entry:
        body = entry.get("body", b"")
        raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        content_type = entry.get("content_type", "application/json")
        return PlainResponse(entry["status"], raw, dict(entry.get("headers", {})), content_type)
    if "sse" in entry:
        spec = dict(entry["sse"])
        steps: list[Step] = [sse_stream(spec.pop("deltas"), **spec)]
    else:
        steps = [chunk.encode() for chunk in entry["chunks"]]
    if entry.get("hang"):
        steps.append(HANG)
    return SseStream(steps)


async def _serve(scripts: list[Script], port: int) -> None:
    """Serve until cancelled, printing the base URL first."""
    async with FakeResponsesServer(scripts, port=port) as server:
        print(server.url, flush=True)
        await asyncio.get_running_loop().create_future()


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: serve the scripts in a JSON file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("script", type=Path)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(load_scripts(args.script), args.port))


if __name__ == "__main__":
    sys.exit(main())
