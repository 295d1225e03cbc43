"""The tool loop through ConversationService: real client, local Responses server, real Redis.

Each test scripts the rounds of one answer and checks every follow-up request body exactly:
the whole conversation again, then per call the `function_call` item as received and its
`function_call_output`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from bot.core.conversation import ConversationService, TurnRequest, TurnResult
from bot.core.events import (
    STOPPED_REASON,
    Completed,
    Failed,
    HistoryItem,
    Incomplete,
    StatusLine,
    StreamEvent,
    TextDelta,
)
from bot.core.history import HistoryStore
from bot.core.keys import ConversationKey
from bot.core.responses import ResponsesClient
from bot.core.tools.loop import ToolRoundsExceededError
from bot.core.tools.registry import Tool, Toolset
from bot.core.turnlock import TurnLock
from tests.support.fake_responses import (
    FakeResponsesServer,
    ScriptedCall,
    SseStream,
    error_response,
    sse_stream,
    tool_call_stream,
)

KEY = ConversationKey("920", "921")
NOTE = "You can look things up with `lookup`."
QUERY_SCHEMA = {
    "type": "object",
    "properties": {"query": {"type": "string"}},
    "required": ["query"],
}


class Tools:
    """Test tools: `lookup` answers from a table; `pair_a`/`pair_b` each wait for the other;
    `stall` never returns (it notes that it started and whether it was cancelled)."""

    def __init__(self) -> None:
        self.seen: list[Mapping[str, Any]] = []
        self.a_ran = asyncio.Event()
        self.b_ran = asyncio.Event()
        self.stall_started = asyncio.Event()
        self.stall_cancelled = False

    async def lookup(self, arguments: Mapping[str, Any]) -> str:
        """The capital the query names."""
        self.seen.append(arguments)
        return {"france": "Paris", "peru": "Lima"}.get(arguments["query"], "unknown")

    async def pair_a(self, _arguments: Mapping[str, Any]) -> str:
        """Finishes only once pair_b has started: proof that calls run side by side."""
        self.a_ran.set()
        await self.b_ran.wait()
        return "a done"

    async def pair_b(self, _arguments: Mapping[str, Any]) -> str:
        """Finishes only once pair_a has started."""
        self.b_ran.set()
        await self.a_ran.wait()
        return "b done"

    async def stall(self, _arguments: Mapping[str, Any]) -> str:
        """Never returns by itself."""
        self.stall_started.set()
        try:
            await asyncio.get_running_loop().create_future()
        except asyncio.CancelledError:
            self.stall_cancelled = True
            raise
        return "never"

    def toolset(self, *, max_rounds: int = 4, stall_timeout: float = 30.0) -> Toolset:
        """Every test tool, in a fixed order."""
        schema = {"type": "object", "properties": {}}
        return Toolset(
            [
                Tool("lookup", "Look up a capital.", QUERY_SCHEMA, self.lookup, "-# 🔎 Looking…"),
                Tool("pair_a", "A.", schema, self.pair_a, "-# A…", timeout=5),
                Tool("pair_b", "B.", schema, self.pair_b, "-# B…", timeout=5),
                Tool("stall", "Stalls.", schema, self.stall, "-# Stalling…", stall_timeout),
            ],
            instructions=NOTE,
            max_rounds=max_rounds,
        )


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
        client = ResponsesClient(session, base_url=server.url, api_key="sk-or-tools")
        store = HistoryStore(redis_client, max_items=40, max_chars=40_000, ttl_seconds=600)
        yield ConversationService(client, store, TurnLock(redis_client), max_output_tokens=256)


def ask(text: str, toolset: Toolset) -> TurnRequest:
    """Ann asks `text` with the tools on."""
    return TurnRequest(
        key=KEY,
        new_items=[HistoryItem(role="user", text=text, speaker="Ann")],
        user_key="test:ann",
        model="test/model",
        instructions="Be brief.",
        tools=toolset,
    )


async def run(
    service: ConversationService, turn: TurnRequest, stop: asyncio.Event | None = None
) -> tuple[TurnResult, list[StreamEvent]]:
    """Run the turn; its result and every event it passed on."""
    events: list[StreamEvent] = []
    result = await service.run_turn(turn, events.append, stop=stop)
    return result, events


def bodies(server: FakeResponsesServer) -> list[dict[str, Any]]:
    """The JSON bodies of every request, in order."""
    return [request.body for request in server.requests]


def call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    """The function_call input item the scripted server's call comes back as."""
    return {
        "type": "function_call",
        "id": f"fc_{call_id}",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }


def output(call_id: str, text: str) -> dict[str, Any]:
    """A function_call_output input item."""
    return {"type": "function_call_output", "call_id": call_id, "output": text}


def said(text: str, item_id: str) -> dict[str, Any]:
    """An assistant message input item."""
    return {
        "type": "message",
        "role": "assistant",
        "id": item_id,
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def follow_up(first: dict[str, Any], added: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The body a follow-up must be: the first request with `added` after its input."""
    return {**first, "input": [*first["input"], *added]}


def answer(text: str, message_id: str = "msg_tmp_end") -> SseStream:
    """A plain streamed answer."""
    return SseStream([sse_stream([text], message_id=message_id)])


async def test_arguments_split_across_deltas_make_one_call_and_one_answer(
    service: ConversationService, server: FakeResponsesServer, redis_client: aioredis.Redis
) -> None:
    """Text, a call whose arguments arrive in pieces, then more text: one answer is shown
    and stored; the follow-up is the first request plus text, call and output."""
    tools = Tools()
    lookup = ScriptedCall("call_1", "lookup", ['{"qu', 'ery": "fra', 'nce"}'])
    server.push(
        tool_call_stream([lookup], text=["Let me ", "check."], message_id="msg_tmp_1"),
        answer("It is Paris."),
    )
    result, events = await run(service, ask("Capital of France?", tools.toolset()))
    first, second = bodies(server)
    assert first["tools"] == tools.toolset().specs()
    assert first["tool_choice"] == "auto"
    assert first["instructions"] == f"Be brief.\n\n{NOTE}"
    assert list(first) == [
        *[k for k in first if k not in ("tools", "tool_choice")],
        "tools",
        "tool_choice",
    ]
    assert second == follow_up(
        first,
        [
            said("Let me check.", "msg_tmp_1"),
            call("call_1", "lookup", '{"query": "france"}'),
            output("call_1", "Paris"),
        ],
    )
    assert tools.seen == [{"query": "france"}]
    assert result.text == "Let me check.\n\nIt is Paris."
    assert [e.text for e in events if isinstance(e, StatusLine)] == ["-# 🔎 Looking…", ""]
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == result.text
    assert isinstance(result.final, Completed)
    assert result.final.usage.input_tokens == 24  # both rounds counted
    stored = await HistoryStore(redis_client, max_items=40, max_chars=40_000, ttl_seconds=60).load(
        KEY
    )
    assert [(i.role, i.text) for i in stored] == [
        ("user", "Capital of France?"),
        ("assistant", "Let me check.\n\nIt is Paris."),
    ]


async def test_two_calls_of_one_round_run_together(
    service: ConversationService, server: FakeResponsesServer
) -> None:
    """Two calls in one round run concurrently (each waits for the other to start) and both
    go back, each call followed by its output, in the order the model made them."""
    tools = Tools()
    calls = [ScriptedCall("c_a", "pair_a", ["{}"]), ScriptedCall("c_b", "pair_b", ["{}"])]
    server.push(tool_call_stream(calls), answer("Both done."))
    result, events = await run(service, ask("Do both.", tools.toolset()))
    first, second = bodies(server)
    assert second == follow_up(
        first,
        [
            call("c_a", "pair_a", "{}"),
            output("c_a", "a done"),
            call("c_b", "pair_b", "{}"),
            output("c_b", "b done"),
        ],
    )
    assert [e.text for e in events if isinstance(e, StatusLine)] == ["-# A…\n-# B…", ""]
    assert result.text == "Both done."


async def test_bad_json_and_an_unknown_tool_become_error_outputs(
    service: ConversationService, server: FakeResponsesServer
) -> None:
    """Arguments that are not JSON, or not an object, a missing argument and an unknown tool
    each get an error string as output; the answer goes on."""
    tools = Tools()
    calls = [
        ScriptedCall("c1", "lookup", ['{"query": ', "fra"]),
        ScriptedCall("c2", "lookup", ["[1]"]),
        ScriptedCall("c3", "lookup", ["{}"]),
        ScriptedCall("c4", "teleport", ['{"to": "Mars"}']),
    ]
    server.push(tool_call_stream(calls), answer("Sorry."))
    result, _ = await run(service, ask("Go.", tools.toolset()))
    first, second = bodies(server)
    bad_json = (
        "error: the arguments are not valid JSON (Expecting value: line 1 column 11 (char 10));"
        " send a JSON object."
    )
    assert second == follow_up(
        first,
        [
            call("c1", "lookup", '{"query": fra'),
            output("c1", bad_json),
            call("c2", "lookup", "[1]"),
            output("c2", "error: the arguments must be a JSON object."),
            call("c3", "lookup", "{}"),
            output("c3", "error: the argument 'query' is missing."),
            call("c4", "teleport", '{"to": "Mars"}'),
            output(
                "c4",
                "error: there is no tool named 'teleport';"
                " the tools are: lookup, pair_a, pair_b, stall.",
            ),
        ],
    )
    assert tools.seen == []
    assert result.text == "Sorry."


async def test_a_tool_that_times_out_gives_an_error_output(
    service: ConversationService, server: FakeResponsesServer
) -> None:
    """A tool past its timeout is cancelled and its output says it took too long."""
    tools = Tools()
    server.push(tool_call_stream([ScriptedCall("c1", "stall", ["{}"])]), answer("It stalled."))
    result, _ = await run(service, ask("Stall.", tools.toolset(stall_timeout=0.01)))
    first, second = bodies(server)
    assert second == follow_up(
        first,
        [
            call("c1", "stall", "{}"),
            output("c1", "error: the stall tool took too long and was stopped."),
        ],
    )
    assert tools.stall_cancelled
    assert result.text == "It stalled."


async def test_after_the_round_limit_the_model_must_answer_without_tools(
    service: ConversationService, server: FakeResponsesServer
) -> None:
    """With max_rounds=2, two rounds of calls run; the third request says tool_choice "none"
    (same tools), and a call it still makes is not run."""
    tools = Tools()

    def lookup(n: int) -> ScriptedCall:
        return ScriptedCall(f"c{n}", "lookup", ['{"query": "peru"}'])

    server.push(
        tool_call_stream([lookup(1)]),
        tool_call_stream([lookup(2)]),
        tool_call_stream([lookup(3)], text=["Lima, I think."], message_id="msg_tmp_last"),
    )
    result, _ = await run(service, ask("Peru?", tools.toolset(max_rounds=2)))
    first, second, third = bodies(server)
    round_one = [call("c1", "lookup", '{"query": "peru"}'), output("c1", "Lima")]
    round_two = [call("c2", "lookup", '{"query": "peru"}'), output("c2", "Lima")]
    assert second == follow_up(first, round_one)
    assert third == {**follow_up(first, [*round_one, *round_two]), "tool_choice": "none"}
    assert len(tools.seen) == 2
    assert result.text == "Lima, I think."
    assert isinstance(result.final, Completed)
    assert result.final.message_id == "msg_tmp_last"


async def test_tool_calls_instead_of_a_last_answer_fail_with_a_sentence(
    service: ConversationService, server: FakeResponsesServer
) -> None:
    """A model that still only calls tools when told not to ends with a clear failure."""
    tools = Tools()
    server.push(
        tool_call_stream([ScriptedCall("c1", "lookup", ['{"query": "peru"}'])]),
        tool_call_stream([ScriptedCall("c2", "lookup", ['{"query": "peru"}'])]),
    )
    result, _ = await run(service, ask("Peru?", tools.toolset(max_rounds=1)))
    assert len(server.requests) == 2
    assert isinstance(result.error, ToolRoundsExceededError)
    assert result.error.user_message.startswith("The model kept calling tools")


async def test_a_refused_tool_choice_is_sent_again_without_it(
    service: ConversationService, server: FakeResponsesServer
) -> None:
    """A provider that refuses `tool_choice` gets the same request without it, once."""
    tools = Tools()
    refusal = "No endpoints found that support the provided 'tool_choice' value."
    server.push(error_response(404, refusal), answer("Hello."))
    result, _ = await run(service, ask("Hi", tools.toolset()))
    first, second = bodies(server)
    assert second == {k: v for k, v in first.items() if k != "tool_choice"}
    assert result.text == "Hello."


async def test_stop_during_a_call_cancels_it_and_keeps_the_text(
    service: ConversationService, server: FakeResponsesServer, redis_client: aioredis.Redis
) -> None:
    """Stop while a tool runs: the tool is cancelled, no follow-up is sent, the text so far
    stays (stored as incomplete) and the answer ends as stopped."""
    tools = Tools()
    server.push(tool_call_stream([ScriptedCall("c1", "stall", ["{}"])], text=["One moment."]))
    stop = asyncio.Event()
    task = asyncio.create_task(run(service, ask("Wait.", tools.toolset()), stop))
    await tools.stall_started.wait()
    stop.set()
    result, events = await task
    assert tools.stall_cancelled
    assert len(server.requests) == 1
    assert result.text == "One moment."
    assert result.final == Incomplete(reason=STOPPED_REASON)
    assert isinstance(events[-1], Incomplete)
    stored = await HistoryStore(redis_client, max_items=40, max_chars=40_000, ttl_seconds=60).load(
        KEY
    )
    assert [(i.text, i.status) for i in stored[1:]] == [("One moment.", "incomplete")]


async def test_a_failure_in_a_later_round_keeps_the_earlier_text(
    service: ConversationService, server: FakeResponsesServer
) -> None:
    """A follow-up that fails ends the answer with its error; the first round's text stays."""
    tools = Tools()
    server.push(
        tool_call_stream([ScriptedCall("c1", "lookup", ['{"query": "peru"}'])], text=["Hm."]),
        error_response(400, "bad"),
    )
    result, _ = await run(service, ask("Peru?", tools.toolset()))
    assert result.text == "Hm."
    assert isinstance(result.final, Failed)
    assert json.dumps(bodies(server)[1]["input"][-1]) == json.dumps(output("c1", "Lima"))
