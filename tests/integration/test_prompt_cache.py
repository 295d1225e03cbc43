"""Prompt caching: each request of a conversation extends the one before, byte for byte.

Real ResponsesClient, HistoryStore, TurnLock and ConversationService against the local
Responses server and the test redis; request bodies are compared as the bytes the server got
(`tests.support.request_bytes` defines "extends").
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from bot.core.conversation import ConversationService, TurnRequest, TurnResult
from bot.core.events import Completed, HistoryItem
from bot.core.history import HistoryStore
from bot.core.keys import ConversationKey
from bot.core.options import AnswerOptions
from bot.core.responses import ResponsesClient
from bot.core.tools.registry import Tool, Toolset
from bot.core.turnlock import TurnLock
from tests.support.fake_responses import (
    FakeResponsesServer,
    ScriptedCall,
    SseStream,
    answer_events,
    encode_events,
    sse_stream,
    tool_call_stream,
)
from tests.support.redis_server import RedisServer
from tests.support.request_bytes import extends, extension_pattern, input_items

KEY = ConversationKey("700", "701")
pytestmark = pytest.mark.usefixtures("redis_client")  # each test starts on an empty database


@pytest.fixture
async def server() -> AsyncIterator[FakeResponsesServer]:
    """A scripted Responses API on 127.0.0.1."""
    async with FakeResponsesServer() as fake:
        yield fake


@asynccontextmanager
async def running_bot(
    server: FakeResponsesServer, redis_url: str, *, max_items: int = 20
) -> AsyncIterator[ConversationService]:
    """A freshly built client, store, lock and service, as a bot process holds them."""
    redis = aioredis.Redis.from_url(redis_url)
    try:
        async with aiohttp.ClientSession() as session:
            client = ResponsesClient(session, base_url=server.url, api_key="sk-or-cache-test")
            store = HistoryStore(redis, max_items=max_items, max_chars=40_000, ttl_seconds=600)
            yield ConversationService(client, store, TurnLock(redis), max_output_tokens=256)
    finally:
        await redis.aclose()


async def turn(
    service: ConversationService,
    server: FakeResponsesServer,
    n: int,
    *,
    model: str = "test/model",
    instructions: str = "Be brief.",
    stream: SseStream | None = None,
    options: AnswerOptions | None = None,
    tools: Toolset | None = None,
) -> TurnResult:
    """Turn `n`: Ann asks question n and the server answers with message id msg_tmp_<n>."""
    server.push(stream or SseStream([sse_stream([f"Answer {n}", "."], message_id=f"msg_tmp_{n}")]))
    request = TurnRequest(
        key=KEY,
        new_items=[HistoryItem(role="user", text=f"Question {n}?", speaker="Ann")],
        user_key="test:ann",
        model=model,
        instructions=instructions,
        options=options or AnswerOptions(),
        tools=tools,
    )
    return await service.run_turn(request, lambda _event: None)


def bodies(server: FakeResponsesServer) -> list[bytes]:
    """Every request body the server got, as sent."""
    return [request.raw for request in server.requests]


async def test_forty_turns_at_twenty_messages_mostly_extend(
    server: FakeResponsesServer, redis_server: RedisServer
) -> None:
    """With HISTORY_MAX_MESSAGES=20, at least 75% of 40 turns extend the previous request."""
    async with running_bot(server, redis_server.url, max_items=20) as service:
        for n in range(40):
            await turn(service, server, n)
    pattern = extension_pattern(bodies(server))
    assert len(pattern) == 39
    assert sum(pattern) / len(pattern) >= 0.75
    # The breaks are the turns right after a trim: at 22 items, down to 10.
    assert [i + 1 for i, extended in enumerate(pattern) if not extended] == [11, 17, 23, 29, 35]


async def test_a_trim_breaks_one_request_and_keeps_the_kept_items_bytes(
    server: FakeResponsesServer, redis_server: RedisServer
) -> None:
    """The request after a trim sends the kept items with the same bytes; the next extends it."""
    async with running_bot(server, redis_server.url, max_items=8) as service:
        for n in range(7):
            await turn(service, server, n)
    sent = bodies(server)
    assert extension_pattern(sent) == [True, True, True, True, False, True]
    # Request 4 sent exchanges 0-3 and question 4; storing turn 4 passed 8 items and kept
    # exchanges 3 and 4 (half of 8 is 4 items), so request 5 starts with request 4's last 3.
    before, after = input_items(sent[4]), input_items(sent[5])
    assert after[:3] == before[6:]
    assert len(after) == 5


async def test_a_settings_change_breaks_once_then_requests_extend_again(
    server: FakeResponsesServer, redis_server: RedisServer
) -> None:
    """A new model, then new instructions, each break one request; the next ones extend."""
    async with running_bot(server, redis_server.url) as service:
        for n in range(3):
            await turn(service, server, n)
        for n in range(3, 6):
            await turn(service, server, n, model="test/other")
        for n in range(6, 9):
            await turn(service, server, n, model="test/other", instructions="Be kind.")
    pattern = extension_pattern(bodies(server))
    assert pattern == [True, True, False, True, True, False, True, True]


async def test_requests_extend_with_reasoning_web_and_fallbacks_on(
    server: FakeResponsesServer, redis_server: RedisServer
) -> None:
    """With reasoning, web search and fallbacks on (answers that reason, cite sources and come
    from a fallback), every request extends the one before; turning an option off breaks one."""
    options = AnswerOptions(
        reasoning_effort="high", web=True, web_max_results=5, fallback_models=("b/one", "b/two")
    )
    async with running_bot(server, redis_server.url) as service:
        for n in range(6):
            rich = sse_stream(
                [f"Answer {n}", "."],
                message_id=f"msg_tmp_{n}",
                reasoning=[f"Thinking about {n}."],
                raw_reasoning=["hidden"],
                citations=[(f"https://example.com/{n}", f"Page {n}")],
                answered_by="b/one",
            )
            await turn(service, server, n, stream=SseStream([rich]), options=options)
        await turn(service, server, 6, options=AnswerOptions(reasoning_effort="high"))
    sent = bodies(server)
    assert extension_pattern(sent) == [True, True, True, True, True, False]
    assert b'"plugins"' in sent[0]
    assert b"hidden" not in b"".join(sent)
    assert b"Thinking about" not in b"".join(sent)


async def test_requests_extend_across_a_restart(
    server: FakeResponsesServer, redis_server: RedisServer
) -> None:
    """After a restart (new client, store and service on the same Redis) the next request
    extends the last one sent before it, an answer that had no API id included."""
    partial = [{"type": "response.output_text.delta", "output_index": 0, "delta": "Half an answer"}]
    no_id_answer = SseStream([encode_events(partial)])
    async with running_bot(server, redis_server.url) as service:
        await turn(service, server, 0)
        failed = await turn(service, server, 1, stream=no_id_answer)
        await turn(service, server, 2)
    assert failed.outcome == "failed"
    assert failed.stored[-1].item_id.startswith("msg_")
    async with running_bot(server, redis_server.url) as restarted:
        await turn(restarted, server, 3)
        await turn(restarted, server, 4)
    sent = bodies(server)
    assert extension_pattern(sent) == [True, True, True, True]
    assert f'"id": "{failed.stored[-1].item_id}"' in input_items(sent[4])[3]


async def test_cached_tokens_reach_the_turn_result(
    server: FakeResponsesServer, redis_server: RedisServer
) -> None:
    """The API's `input_tokens_details.cached_tokens` is reported on the answer's usage."""
    events: list[dict[str, Any]] = answer_events(["Hi"], message_id="msg_tmp_c")
    events[-1]["response"]["usage"]["input_tokens_details"] = {"cached_tokens": 1024}
    async with running_bot(server, redis_server.url) as service:
        result = await turn(service, server, 0, stream=SseStream([encode_events(events)]))
    assert isinstance(result.final, Completed)
    assert (result.final.usage.cached_tokens, result.final.usage.cost) == (1024, 0.00012)


async def _echo(arguments: object) -> str:
    """A tool that answers with what it was given."""
    return json.dumps(arguments)


def _toolset() -> Toolset:
    """Two tools, built afresh each time (as each turn of the bot does)."""
    schema = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}
    tools = [Tool(name, f"The {name} tool.", dict(schema), _echo) for name in ("recall", "note")]
    return Toolset(tools, instructions="Tools exist.")


async def test_with_tools_on_requests_still_extend(
    server: FakeResponsesServer, redis_server: RedisServer
) -> None:
    """With tools on, each turn's first request extends the previous turn's first request
    (tools, tool_choice and instructions the same bytes), also across a turn that called a
    tool, whose follow-up extends its own first request."""
    called = tool_call_stream([ScriptedCall("c1", "recall", ['{"q": "x"}'])], text=["Hm."])
    async with running_bot(server, redis_server.url) as service:
        await turn(service, server, 0, tools=_toolset())
        server.push(called)
        await turn(service, server, 1, tools=_toolset())
        await turn(service, server, 2, tools=_toolset())
    first_0, first_1, follow_up_1, first_2 = bodies(server)
    assert extension_pattern([first_0, first_1, follow_up_1]) == [True, True]
    assert extends(first_1, first_2)
    assert b'"tool_choice": "auto"' in first_2
    assert b'"tools": [{"type": "function", "name": "recall"' in first_2


def test_extends_compares_bytes() -> None:
    """The helper: new trailing items extend; any other byte change (field or item) does not."""
    base = b'{"model": "m", "input": [{"a": 1}], "stream": true}'
    assert extends(base, b'{"model": "m", "input": [{"a": 1}, {"b": 2}], "stream": true}')
    assert not extends(base, b'{"model": "n", "input": [{"a": 1}, {"b": 2}], "stream": true}')
    assert not extends(base, b'{"model": "m", "input": [{"a":1}, {"b": 2}], "stream": true}')
    assert not extends(base, b'{"input": [{"a": 1}, {"b": 2}], "model": "m", "stream": true}')
    assert not extends(base, b'{"model": "m", "input": [{"b": 2}], "stream": true}')


async def test_the_same_history_gives_the_same_request_bytes() -> None:
    """Built twice by two clients, a request is the same JSON, an answer stored without an id
    included (it gets an id derived from its text, not a new random one per request)."""
    history = [
        HistoryItem(role="user", text="Hi", speaker="Ann"),
        HistoryItem(role="assistant", text="Hello!", status="incomplete"),
        HistoryItem(role="user", text="Again", speaker="Bob"),
    ]
    options: dict[str, Any] = {
        "instructions": "Be brief.",
        "model": "test/model",
        "max_output_tokens": 256,
        "user_key": "test:ann",
        "conversation_key": str(KEY),
    }

    async def build() -> bytes:
        """One request body as aiohttp serialises it, from a freshly made client."""
        async with aiohttp.ClientSession() as session:
            client = ResponsesClient(session, base_url="http://127.0.0.1:1", api_key="k")
            return json.dumps(client.build_request(history, **options)).encode()

    first = await build()
    assert first == await build()
    assert input_items(first)[1].startswith('{"type": "message", "role": "assistant", "id": "msg_')
