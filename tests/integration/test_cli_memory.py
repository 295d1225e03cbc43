"""`python -m bot ask` with the memory tools and `python -m bot memory --guild ID`, as real
subprocesses against the local Responses server and the test redis."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from bot.core.tools.context import Caller, Place
from bot.core.tools.memory_store import MemoryStore
from tests.integration.test_cli import Cli, SignallingServer, cli_runner
from tests.support.fake_responses import ScriptedCall, SseStream, sse_stream, tool_call_stream
from tests.support.redis_server import RedisServer

NOW = 1_767_225_600.0  # 2026-01-01 00:00 UTC


@pytest.fixture
async def server() -> AsyncIterator[SignallingServer]:
    """The scripted Responses API, serving from this test's event loop."""
    async with SignallingServer() as fake:
        yield fake


@pytest.fixture
async def cli(
    tmp_path: Path,
    server: SignallingServer,
    redis_server: RedisServer,
    redis_client: aioredis.Redis,
) -> AsyncIterator[Cli]:
    """A CLI runner wired to the fake server and the (emptied) test redis, memory on."""
    async with cli_runner(tmp_path, server, redis_server, MEMORY_ENABLED="true") as runner:
        yield runner


def answer(text: str) -> SseStream:
    """A plain streamed answer."""
    return SseStream([sse_stream([text])])


async def test_ask_remembers_in_one_channel_and_recalls_in_another(
    cli: Cli, server: SignallingServer
) -> None:
    """With MEMORY_ENABLED, ask offers the memory tools; a fact remembered in one terminal
    conversation is recalled in another, and `memory --guild local` lists it."""
    remember = ScriptedCall("c1", "remember", ['{"fact": "The demo ', 'is on Friday."}'])
    server.push(tool_call_stream([remember], text=["Noted."]), answer(""))
    done = await cli.run("ask", "Remember: the demo is on Friday.", "--channel", "one")
    assert (done.returncode, done.stdout) == (0, "Noted.\n")
    first = server.requests[0].body
    assert [tool["name"] for tool in first["tools"]] == ["remember", "recall", "forget"]
    assert json.loads(server.requests[1].body["input"][-1]["output"])["id"] == "1"

    recall = ScriptedCall("c2", "recall", ['{"query": "demo"}'])
    server.push(tool_call_stream([recall]), answer("Friday."))
    done = await cli.run("ask", "When is the demo?", "--channel", "two")
    assert (done.returncode, done.stdout) == (0, "Friday.\n")
    [fact] = json.loads(server.requests[3].body["input"][-1]["output"])["facts"]
    assert (fact["statement"], fact["told_by"]) == ("The demo is on Friday.", "terminal")

    listed = await cli.run("memory", "--guild", "local")
    assert listed.returncode == 0
    lines = listed.stdout.splitlines()
    assert lines[0].startswith("#1  ")
    assert lines[0].endswith("  terminal (terminal)  in channel one  [public]")
    assert lines[1:] == ["    The demo is on Friday."]
    assert listed.error_lines == ["1 fact in the memory of server local (memory is on)."]


async def test_without_memory_enabled_ask_sends_no_tools(
    cli: Cli, server: SignallingServer
) -> None:
    """MEMORY_ENABLED off (the default): the request has no tools and no tool_choice."""
    server.push(answer("Hi."))
    done = await cli.run("ask", "Hello", MEMORY_ENABLED=None)
    assert done.returncode == 0
    assert "tools" not in server.requests[0].body
    assert "tool_choice" not in server.requests[0].body


async def test_memory_lists_every_fact_with_where_and_visibility(
    cli: Cli, redis_client: aioredis.Redis
) -> None:
    """The owner's listing shows every fact of the server, private ones included, with where
    it was told and who may hear it; other servers' facts are not listed."""
    store = MemoryStore(redis_client, clock=lambda: NOW)
    ann = Caller("11", "Ann")
    await store.remember(Place("1", "100", public=True), ann, "Public fact.")
    await store.remember(Place("1", "201", parent="200", thread="public"), ann, "Staff fact.")
    await store.remember(
        Place("1", "203", parent="100", thread="private", public=True), ann, "Mine."
    )
    await store.remember(Place("2", "100", public=True), ann, "Elsewhere.")
    done = await cli.run("memory", "--guild", "1")
    assert done.returncode == 0
    assert done.stdout.splitlines() == [
        "#1  2026-01-01 00:00 UTC  Ann (11)  in channel 100  [public]",
        "    Public fact.",
        "#2  2026-01-01 00:00 UTC  Ann (11)  in public thread 201 of channel 200  "
        "[private to channel 200]",
        "    Staff fact.",
        "#3  2026-01-01 00:00 UTC  Ann (11)  in private thread 203 of channel 100  "
        "[private to thread 203]",
        "    Mine.",
    ]
    assert done.error_lines == ["3 facts in the memory of server 1 (memory is off)."]


async def test_memory_of_a_bad_server_name_is_one_line(cli: Cli) -> None:
    """A server name the keys cannot hold is refused with one line."""
    done = await cli.run("memory", "--guild", "a{b")
    assert done.returncode == 1
    assert done.error_lines == ["A guild name must not contain braces or whitespace: 'a{b'."]
