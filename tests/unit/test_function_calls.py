"""The stream parser's function calls and the tool registry's pure parts."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.core.events import Completed, FunctionCall
from bot.core.response_stream import ResponseStreamParser
from bot.core.sse import ServerSentEvent
from bot.core.tools.registry import Tool, ToolError, Toolset, check_arguments
from tests.support.fake_responses import ScriptedCall, tool_call_events


def parse(payloads: list[dict[str, Any]]) -> list[object]:
    """Every typed event a list of payloads stands for."""
    parser = ResponseStreamParser()
    events: list[object] = []
    for payload in payloads:
        events += parser.on_event(ServerSentEvent(event=None, data=json.dumps(payload)))
    return events


def test_a_call_is_collected_from_its_argument_deltas() -> None:
    """Argument deltas make one FunctionCall when the item is done, before Completed."""
    call = ScriptedCall("call_1", "recall", ['{"que', 'ry": "ca', 'ts"}'])
    events = parse(tool_call_events([call]))
    assert events[:-1] == [FunctionCall("call_1", "recall", '{"query": "cats"}', "fc_call_1")]
    assert isinstance(events[-1], Completed)


def test_streamed_arguments_fill_an_item_done_without_them() -> None:
    """An `output_item.done` whose item lacks arguments gets the streamed (or .done) text."""
    added = {"type": "function_call", "id": "fc_9", "call_id": "c9", "name": "remember"}
    ref = {"item_id": "fc_9", "output_index": 0}
    events = parse(
        [
            {"type": "response.output_item.added", "output_index": 0, "item": added},
            {"type": "response.function_call_arguments.delta", **ref, "delta": '{"fact": '},
            {"type": "response.function_call_arguments.delta", **ref, "delta": '"x"}'},
            {"type": "response.output_item.done", "output_index": 0, "item": added},
        ]
    )
    assert events == [FunctionCall("c9", "remember", '{"fact": "x"}', "fc_9")]


def test_a_call_only_in_the_final_output_is_read_once() -> None:
    """A call announced only in response.completed's output still counts, once."""
    item = {"type": "function_call", "id": "fc_2", "call_id": "c2", "name": "recall"}
    item["arguments"] = "{}"
    response = {"status": "completed", "output": [item, item]}
    events = parse([{"type": "response.completed", "response": response}])
    assert events[:-1] == [FunctionCall("c2", "recall", "{}", "fc_2")]


def test_a_call_goes_back_as_received() -> None:
    """The input item carries exactly type, id, call_id, name and arguments."""
    call = FunctionCall("c1", "recall", '{"query":"a"}', "fc_1")
    assert call.as_input() == {
        "type": "function_call",
        "id": "fc_1",
        "call_id": "c1",
        "name": "recall",
        "arguments": '{"query":"a"}',
    }


async def _nothing(_arguments: object) -> str:
    """A handler that answers nothing."""
    return ""


def test_toolset_keeps_its_order_and_refuses_twins() -> None:
    """Specs come in the set's order; two tools with one name are refused."""
    schema = {"type": "object", "properties": {}}
    tools = [Tool(name, "d", schema, _nothing) for name in ("b", "a")]
    assert [spec["name"] for spec in Toolset(tools).specs()] == ["b", "a"]
    with pytest.raises(ValueError, match="share a name"):
        Toolset([tools[0], tools[0]])


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({}, "'fact' is missing"),
        ({"fact": 3}, "must be a string"),
        ({"fact": "x" * 11}, "11 characters; the most is 10"),
    ],
)
def test_arguments_are_checked_against_the_schema(arguments: dict[str, Any], message: str) -> None:
    """Missing, mistyped and too long arguments are refused with a sentence for the model."""
    schema = {
        "type": "object",
        "properties": {"fact": {"type": "string", "maxLength": 10}},
        "required": ["fact"],
    }
    with pytest.raises(ToolError, match=message):
        check_arguments(schema, arguments)
