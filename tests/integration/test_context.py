"""Context that fits: a small-context model in the local model list gets a trimmed history,
cut in blocks so requests still extend each other; a context-length error is retried once with
half the history and the answer says so.

Real ModelCatalog, ResponsesClient, HistoryStore and ConversationService against the local
Responses server (which lists the models with their `context_length`) and the test redis.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
import pytest
import redis.asyncio as aioredis

from bot.core.context import LEFT_OUT_NOTICE
from bot.core.conversation import ConversationService, TurnRequest, TurnResult
from bot.core.events import Completed, HistoryItem, StreamEvent
from bot.core.history import HistoryStore
from bot.core.keys import ConversationKey
from bot.core.models import ModelCatalog
from bot.core.renderer import notices_for
from bot.core.responses import ResponsesClient
from bot.core.turnlock import TurnLock
from tests.support.fake_responses import (
    FakeResponsesServer,
    Script,
    SseStream,
    error_response,
    sse_stream,
)
from tests.support.redis_server import RedisServer
from tests.support.request_bytes import extension_pattern, input_items

KEY = ConversationKey("700", "701")
SMALL, LARGE = "tiny/model", "huge/model"
OUTPUT_TOKENS = 256
pytestmark = pytest.mark.usefixtures("redis_client")  # each test starts on an empty database


async def no_sleep(_seconds: float) -> None:
    """Retry waits return at once."""


@dataclass
class Rig:
    """The parts a turn runs on."""

    service: ConversationService
    catalog: ModelCatalog
    server: FakeResponsesServer
    store: HistoryStore


@asynccontextmanager
async def rig(redis_server: RedisServer) -> AsyncIterator[Rig]:
    """A service and a model catalog on the local API that lists a 2,000-token model."""
    redis = aioredis.Redis.from_url(redis_server.url)
    try:
        async with (
            FakeResponsesServer(models=[SMALL, LARGE]) as server,
            aiohttp.ClientSession() as session,
        ):
            server.context_lengths = {SMALL: 2000, LARGE: 1_000_000}
            client = ResponsesClient(session, base_url=server.url, api_key="k", sleep=no_sleep)
            store = HistoryStore(redis, max_items=1000, max_chars=1_000_000, ttl_seconds=600)
            service = ConversationService(
                client, store, TurnLock(redis), max_output_tokens=OUTPUT_TOKENS
            )
            catalog = ModelCatalog(session, redis, base_url=server.url)
            yield Rig(service, catalog, server, store)
    finally:
        await redis.aclose()


async def turn(
    rig: Rig, n: int, *, model: str = SMALL, stream: Script | None = None
) -> tuple[TurnResult, list[StreamEvent]]:
    """Turn `n`: Ann asks a 400-character question; the answer is 400 characters too."""
    answer = f"Answer {n} ".ljust(400, ".")
    rig.server.push(stream or SseStream([sse_stream([answer], message_id=f"msg_tmp_{n}")]))
    events: list[StreamEvent] = []
    request = TurnRequest(
        key=KEY,
        new_items=[HistoryItem(role="user", text=f"Question {n} ".ljust(400, "?"), speaker="Ann")],
        user_key="test:ann",
        model=model,
        instructions="Be brief.",
        context_tokens=await rig.catalog.context_length(model),
    )
    result = await rig.service.run_turn(request, events.append)
    return result, events


async def test_the_model_list_gives_context_lengths(redis_server: RedisServer) -> None:
    """Listed lengths are known (also for a routing suffix); unlisted ones are not."""
    async with rig(redis_server) as parts:
        assert await parts.catalog.context_length(SMALL) == 2000
        assert await parts.catalog.context_length(f"{SMALL}:online") == 2000
        assert await parts.catalog.context_length("other/model") is None


async def test_a_small_model_gets_the_newest_exchanges_cut_in_blocks(
    redis_server: RedisServer,
) -> None:
    """Requests to a 2,000-token model stay under its budget, the stored history keeps all,
    and most requests extend the one before (the cut moves only every few turns)."""
    async with rig(redis_server) as parts:
        for n in range(16):
            await turn(parts, n)
        sent = [request.raw for request in parts.server.requests]
        assert all(len(input_items(body)) < 2 * 16 for body in sent)
        largest = max(sum(len(item) for item in input_items(body)) for body in sent)
        assert largest < (2000 - OUTPUT_TOKENS) * 4  # chars/4 estimate under the context
        assert len(input_items(sent[-1])) < 31
        assert len(await parts.store.load(KEY)) == 32  # nothing was deleted
        pattern = extension_pattern(sent)
        assert sum(pattern) >= 10, pattern
        # The same history goes whole to a model with room for it.
        await turn(parts, 16, model=LARGE)
        assert len(input_items(parts.server.requests[-1].raw)) == 33


async def test_a_context_error_is_retried_once_with_half_and_says_so(
    redis_server: RedisServer,
) -> None:
    """The API refuses the request as too long: the turn asks again with half the history,
    the answer comes with a notice, and the turn is stored as usual."""
    async with rig(redis_server) as parts:
        for n in range(6):
            await turn(parts, n, model=LARGE)
        too_long = error_response(400, "too long", code="context_length_exceeded")
        parts.server.push(too_long)
        result, events = await turn(parts, 6, model=LARGE)
        first, second = parts.server.requests[-2:]
        assert len(input_items(first.raw)) == 13
        assert 1 < len(input_items(second.raw)) <= 7
        assert input_items(second.raw) == input_items(first.raw)[-len(input_items(second.raw)) :]
        assert isinstance(result.final, Completed)
        assert result.final.notices == (LEFT_OUT_NOTICE,)
        assert events[-1] == result.final
        assert notices_for(result.final)[0] == LEFT_OUT_NOTICE
        assert (await parts.store.load(KEY))[-1].text.startswith("Answer 6")


async def test_a_second_context_error_is_not_retried_again(redis_server: RedisServer) -> None:
    """Only one retry: when the shorter request is refused too, the turn fails with both."""
    async with rig(redis_server) as parts:
        for n in range(4):
            await turn(parts, n, model=LARGE)
        refused = error_response(400, "too long", code="context_length_exceeded")
        parts.server.push(refused)
        result, _ = await turn(parts, 4, model=LARGE, stream=refused)
        assert result.error is not None
        assert len(parts.server.requests) == 4 + 2
