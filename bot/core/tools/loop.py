"""The tool loop: one answer that may call function tools, streamed as one answer.

`ToolLoop.stream(request)` sends the request with the toolset's `tools` and `tool_choice:
"auto"`, yields the model's text as it comes, and collects the function calls of the round.
When the round completes with calls, they run concurrently (each under its tool's timeout; bad
JSON, an unknown tool, a refusal or a failure becomes an `error: ...` output, never a crash)
while a `StatusLine` says what is happening; the next request sends the whole conversation
again plus, per call, the `function_call` item as received and its `function_call_output`.
After `max_rounds` rounds of calls the model is asked to answer without tools.

How the last round says "no more tools": `tool_choice: "none"` with the same `tools` list. The
tools stay because the input now holds function_call items, which some providers refuse
without tool definitions, and because the same `tools` bytes keep the prompt cache warm. Some
providers refuse an explicit `tool_choice` (HTTP 4xx naming it); then that request is sent once
more without `tool_choice` (and later rounds leave it out). Calls the model still makes in the
last round are not run; if it wrote no text at all, the answer fails with one sentence.

The text of every round is one answer (a blank line between rounds' texts); only the final
event of the last round is passed on, with the usage of every round added up. Stop cancels the
stream or the running tools alike; the text so far stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from bot.core.errors import LLMError, LLMStatusError, LLMStreamError
from bot.core.events import (
    Completed,
    Failed,
    FunctionCall,
    HistoryItem,
    Incomplete,
    StatusLine,
    StreamEvent,
    TextDelta,
    Usage,
)
from bot.core.responses import EventSource, history_item_input
from bot.core.tools.registry import Tool, ToolError, Toolset, check_arguments

log = logging.getLogger(__name__)

ROUND_SEPARATOR = "\n\n"


class ToolRoundsExceededError(LLMError):
    """The model kept calling tools after it was asked to answer without them."""

    default_user_message = "The model kept calling tools and gave no answer; please try again."


def with_tools(request: dict[str, Any], toolset: Toolset) -> dict[str, Any]:
    """The request with the toolset's note added to its instructions, its function tools after
    any tools it has, and `tool_choice: "auto"` (the same bytes every turn)."""
    body = dict(request)
    if toolset.instructions:
        base = str(body.get("instructions") or "")
        body["instructions"] = f"{base}\n\n{toolset.instructions}" if base else toolset.instructions
    if toolset.tools:  # after any tools the request already has (e.g. web search)
        body["tools"] = [*body.get("tools", []), *toolset.specs()]
        body["tool_choice"] = "auto"
    return body


def call_output(call: FunctionCall, output: str) -> dict[str, Any]:
    """The `function_call_output` input item answering a call."""
    return {"type": "function_call_output", "call_id": call.call_id, "output": output}


def _refuses_tool_choice(error: LLMError) -> bool:
    """Whether a request was refused for its explicit `tool_choice` (a provider quirk)."""
    if not isinstance(error, LLMStatusError) or not 400 <= error.status < 500:
        return False
    return "tool_choice" in f"{error.provider_message} {error.detail}"


def _add_usage(total: Usage, more: Usage) -> Usage:
    """Two rounds' usage added up (cost stays unknown only if neither reported one)."""
    cost = None
    if total.cost is not None or more.cost is not None:
        cost = (total.cost or 0) + (more.cost or 0)
    return Usage(
        input_tokens=total.input_tokens + more.input_tokens,
        output_tokens=total.output_tokens + more.output_tokens,
        reasoning_tokens=total.reasoning_tokens + more.reasoning_tokens,
        cost=cost,
        cached_tokens=total.cached_tokens + more.cached_tokens,
    )


@dataclasses.dataclass(slots=True)
class _Round:
    """What one round streamed: its text, its calls and its final event."""

    text: list[str] = dataclasses.field(default_factory=list)
    calls: list[FunctionCall] = dataclasses.field(default_factory=list)
    final: Completed | Incomplete | Failed | None = None
    events: int = 0


class ToolLoop:
    """Streams one answer through rounds of tool calls (see the module docstring)."""

    def __init__(self, source: EventSource, toolset: Toolset) -> None:
        self._source = source
        self._toolset = toolset

    async def stream(self, request: dict[str, Any]) -> AsyncGenerator[StreamEvent, None]:
        """Yield the answer's events across every round, ending with one final event."""
        body = with_tools(request, self._toolset)
        history = list(body["input"])
        added: list[dict[str, Any]] = []
        usage = Usage()
        message_id: str | None = None
        wrote = False
        for number in range(self._toolset.max_rounds + 1):
            last = number == self._toolset.max_rounds
            current = {**body, "input": [*history, *added]}
            if last and "tool_choice" in current:
                current["tool_choice"] = "none"
            round_ = _Round()
            async with contextlib.aclosing(self._round(current, round_, body)) as events:
                async for event in events:
                    if isinstance(event, TextDelta) and not round_.text and wrote:
                        yield TextDelta(ROUND_SEPARATOR)
                    if isinstance(event, TextDelta):
                        round_.text.append(event.text)
                        wrote = True
                    yield event
            final = round_.final
            assert final is not None
            message_id = final.message_id or message_id
            if not isinstance(final, Completed):
                yield dataclasses.replace(final, message_id=message_id)
                return
            usage = _add_usage(usage, final.usage)
            if not round_.calls or last:
                if round_.calls and not wrote:
                    yield Failed(ToolRoundsExceededError("tool calls in the last round"))
                    return
                yield dataclasses.replace(final, message_id=message_id, usage=usage)
                return
            added += _round_text(round_, final)
            status = self._status(round_.calls)
            if status:
                yield StatusLine(status)
            outputs = await asyncio.gather(*(self._run(call) for call in round_.calls))
            if status:
                yield StatusLine("")
            for call, output in zip(round_.calls, outputs, strict=True):
                added += [call.as_input(), call_output(call, output)]
        raise AssertionError("unreachable: the last round always returns")  # pragma: no cover

    async def _round(
        self, request: dict[str, Any], round_: _Round, body: dict[str, Any]
    ) -> AsyncGenerator[StreamEvent, None]:
        """One request's visible events; its calls and final event are kept in `round_`.

        A request refused for its `tool_choice` before any event is sent once more without it,
        and `body` loses it for the rounds after."""
        retried = again = False
        while round_.final is None:
            again = False
            async with contextlib.aclosing(self._source.stream(request)) as events:
                async for event in events:
                    if isinstance(event, FunctionCall):
                        round_.calls.append(event)
                    elif not isinstance(event, Completed | Incomplete | Failed):
                        round_.events += 1
                        yield event
                    elif not retried and self._retry_without_choice(event, round_, request):
                        retried = again = True
                        request = {k: v for k, v in request.items() if k != "tool_choice"}
                        body.pop("tool_choice", None)
                    else:
                        round_.final = event
            if round_.final is None and not again:  # a source that broke its promise
                round_.final = Failed(LLMStreamError("the stream ended without a final event"))

    @staticmethod
    def _retry_without_choice(
        final: Completed | Incomplete | Failed, round_: _Round, request: dict[str, Any]
    ) -> bool:
        """Whether a request failed, before any event, only for its explicit `tool_choice`."""
        if not isinstance(final, Failed) or "tool_choice" not in request or round_.events:
            return False
        if not _refuses_tool_choice(final.error):
            return False
        log.info("The provider refused tool_choice (%s); sending without it.", final.error)
        return True

    def _status(self, calls: Sequence[FunctionCall]) -> str:
        """The status lines of the tools being called, each once, in call order."""
        lines: list[str] = []
        for call in calls:
            tool = self._toolset.get(call.name)
            if tool is not None and tool.status and tool.status not in lines:
                lines.append(tool.status)
        return "\n".join(lines)

    async def _run(self, call: FunctionCall) -> str:
        """Run one call; whatever goes wrong becomes an `error: ...` output for the model."""
        tool = self._toolset.get(call.name)
        if tool is None:
            known = ", ".join(self._toolset.names)
            return f"error: there is no tool named {call.name!r}; the tools are: {known}."
        try:
            arguments = json.loads(call.arguments) if call.arguments.strip() else {}
        except ValueError as exc:
            return f"error: the arguments are not valid JSON ({exc}); send a JSON object."
        if not isinstance(arguments, dict):
            return "error: the arguments must be a JSON object."
        return await _run_tool(tool, arguments)


async def _run_tool(tool: Tool, arguments: dict[str, Any]) -> str:
    """The tool's output for valid arguments, or an `error: ...` line; never raises (but for
    cancellation: Stop cancels a running tool)."""
    try:
        check_arguments(tool.parameters, arguments)
        async with asyncio.timeout(tool.timeout):
            return await tool.handler(arguments)
    except ToolError as exc:
        return f"error: {exc}."
    except TimeoutError:
        log.warning("Tool %s took longer than %.1f s", tool.name, tool.timeout)
        return f"error: the {tool.name} tool took too long and was stopped."
    except Exception:
        log.exception("Tool %s failed", tool.name)
        return f"error: the {tool.name} tool failed; it may work later."


def _round_text(round_: _Round, final: Completed) -> list[dict[str, Any]]:
    """The assistant message a round wrote before its calls, as an input item (none if empty)."""
    text = "".join(round_.text)
    if not text:
        return []
    item = HistoryItem(role="assistant", text=text, item_id=final.message_id or "")
    return [history_item_input(item)]
