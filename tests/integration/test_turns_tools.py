"""TurnRunner with tools: the front-end's place and caller reach the turn's tools, and the
reply shows a tool's status line while it runs (virtual time, real Redis, local API)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from bot.core.conversation import ConversationService
from bot.core.history import HistoryStore
from bot.core.last_answers import LastAnswers
from bot.core.pacing import EditPacer
from bot.core.prefs import Preferences
from bot.core.responses import ResponsesClient
from bot.core.tools.context import Caller, Place, ToolContext
from bot.core.tools.registry import Tool, Toolset
from bot.core.turnlock import TurnLock
from bot.core.turns import TurnRunner
from tests.integration.test_turns import IO_GRACE, KEY, MODEL, WatchedSink, question
from tests.support.fake_responses import (
    FakeResponsesServer,
    ScriptedCall,
    SseStream,
    sse_stream,
    tool_call_stream,
)
from tests.support.redis_server import RedisServer
from tests.support.virtual_time import run_virtual

STATUS = "-# 🧠 Remembering…"
CONTEXT = ToolContext(Place("700", "701", public=True), Caller("1", "Ann"))


class HeldTools:
    """A TurnTools whose `remember` waits for `release`; it records the contexts it got."""

    def __init__(self) -> None:
        self.contexts: list[ToolContext] = []
        self.release = asyncio.Event()

    async def for_turn(self, context: ToolContext) -> Toolset | None:
        """One tool, bound to the turn's context."""
        self.contexts.append(context)

        async def remember(_arguments: Mapping[str, Any]) -> str:
            await self.release.wait()
            return "ok"

        schema = {"type": "object", "properties": {}}
        return Toolset([Tool("remember", "Keep a fact.", schema, remember, STATUS)])


def test_the_turns_context_reaches_its_tools_and_the_status_shows(
    redis_server: RedisServer,
) -> None:
    """run(context=...) gives the turn its tools; while one runs the reply shows its status
    line; the final reply is the answer alone; without a context no tools are asked for."""
    tools = HeldTools()

    async def scenario(server: FakeResponsesServer, runner: TurnRunner) -> dict[str, Any]:
        server.push(
            tool_call_stream([ScriptedCall("c1", "remember", ["{}"])]),
            SseStream([sse_stream(["Saved."])]),
            SseStream([sse_stream(["Plain."])]),
        )
        sink = WatchedSink(channel="701")
        task = asyncio.create_task(
            runner.run(KEY, question("Keep this."), asker_id=1, sink=sink, context=CONTEXT)
        )
        async with asyncio.timeout(60):  # virtual seconds: fails at once if it never shows
            await sink.wait_for(lambda: STATUS in sink.messages())
        tools.release.set()
        await task
        plain = WatchedSink(channel="701")
        await runner.run(KEY, question("Hi."), asker_id=1, sink=plain)
        return {
            "shown": sink.messages(),
            "plain": plain.messages(),
            "tools_sent": ["tools" in r.body for r in server.requests],
        }

    async def main() -> dict[str, Any]:
        redis = aioredis.Redis.from_url(redis_server.url)
        await redis.flushdb()
        try:
            async with FakeResponsesServer() as server, aiohttp.ClientSession() as session:
                client = ResponsesClient(session, base_url=server.url, api_key="k")
                store = HistoryStore(redis, max_items=40, max_chars=40_000, ttl_seconds=600)
                service = ConversationService(client, store, TurnLock(redis), max_output_tokens=256)
                prefs = Preferences(redis, default_model=MODEL, default_system="Be brief.")
                runner = TurnRunner(
                    service, prefs, EditPacer(), LastAnswers(redis), queue_depth=5, tools=tools
                )
                return await scenario(server, runner)
        finally:
            await redis.aclose()

    result = run_virtual(main(), io_grace=IO_GRACE)
    assert result["shown"] == ["Saved."]
    assert result["plain"] == ["Plain."]
    assert result["tools_sent"] == [True, True, False]
    assert tools.contexts == [CONTEXT]
