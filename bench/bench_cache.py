"""Prompt caching: how often a request extends the previous one, in a 100-turn conversation.

A scripted conversation (three speakers, questions of 40-400 characters, answers of 200-2,500,
from a fixed seed) runs through the real `ConversationService`, `ResponsesClient` and
`HistoryStore` at the default history limits, against the local fake Responses server and the
bench's own redis-server. Each request body is compared, as the bytes sent, with the one before
(`tests.support.request_bytes.extends`: same fields, earlier input items byte-identical). A
provider's prompt cache can serve an extending request's earlier part; the characters that are
new to it are what a turn pays full price for. For comparison the same conversation runs again
with the old rule, which dropped only as much as needed (one exchange per turn) past a limit.
Run alone with `python -m bench.bench_cache`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import redis.asyncio as aioredis

from bench.table import Row, print_table
from bot.config import Settings
from bot.core.conversation import ConversationService, TurnRequest
from bot.core.events import HistoryItem
from bot.core.history import TRIM_TO, HistoryStore
from bot.core.keys import ConversationKey
from bot.core.responses import ResponsesClient
from bot.core.turnlock import TurnLock
from tests.support.fake_responses import FakeResponsesServer, SseStream, sse_stream
from tests.support.redis_server import RedisServer
from tests.support.request_bytes import extends, input_items

TURNS = 100
SEED = 14
SPEAKERS = ("Ann", "Bob", "Chidi")
QUESTION_CHARS = (40, 400)
ANSWER_CHARS = (200, 2_500)
WORDS = ("the ", "cache ", "answer ", "question ", "Grüße ", "你好 ", "model ", "prefix ")


def _text(rng: random.Random, size_range: tuple[int, int], turn: int) -> str:
    """Text of a random length in `size_range`, different for every turn."""
    size = rng.randint(*size_range)
    words = "".join(rng.choices(WORDS, k=size // 4 + 1))
    return f"{turn}: {words}"[:size]


def _input_chars(body: bytes) -> int:
    """Characters of text in a request body's input items: what its input tokens are made of."""
    items = [json.loads(item) for item in input_items(body)]
    return sum(len(part["text"]) for item in items for part in item["content"])


async def run_conversation(redis_url: str, trim_to: float = TRIM_TO) -> list[bytes]:
    """Run the scripted turns at the default limits; every request body as sent."""
    defaults = Settings.model_fields
    rng = random.Random(SEED)
    key = ConversationKey("bench", "cache")
    redis = aioredis.Redis.from_url(redis_url)
    try:
        await redis.delete(key.items)
        async with FakeResponsesServer() as server, aiohttp.ClientSession() as session:
            client = ResponsesClient(session, base_url=server.url, api_key="sk-or-bench")
            store = HistoryStore(
                redis,
                max_items=defaults["history_max_messages"].default,
                max_chars=defaults["history_max_chars"].default,
                ttl_seconds=600,
                trim_to=trim_to,
            )
            service = ConversationService(client, store, TurnLock(redis), max_output_tokens=1024)
            for turn in range(TURNS):
                answer = _text(rng, ANSWER_CHARS, turn)
                deltas = [answer[i : i + 40] for i in range(0, len(answer), 40)]
                server.push(SseStream([sse_stream(deltas, message_id=f"msg_tmp_{turn}")]))
                question = _text(rng, QUESTION_CHARS, turn)
                request = TurnRequest(
                    key=key,
                    new_items=[HistoryItem("user", question, speaker=SPEAKERS[turn % 3])],
                    user_key="bench:owner",
                    model="bench/model",
                    instructions="You are a helpful assistant in a Discord channel.",
                )
                await service.run_turn(request, lambda _event: None)
            return [request.raw for request in server.requests]
    finally:
        await redis.delete(key.items)
        await redis.aclose()


@dataclass(frozen=True)
class Figures:
    """What one run of the conversation cost in requests and characters."""

    extended: list[bool]
    sizes: list[int]
    new: list[int]

    @classmethod
    def of(cls, bodies: list[bytes]) -> Figures:
        """The figures of a run's request bodies."""
        extended = [extends(a, b) for a, b in itertools.pairwise(bodies)]
        sizes = [_input_chars(body) for body in bodies]
        pairs = zip(itertools.pairwise(sizes), extended, strict=True)
        new = [sizes[0], *(after - (before if ext else 0) for (before, after), ext in pairs)]
        return cls(extended, sizes, new)

    @property
    def share(self) -> str:
        """The share of requests that extend the one before, as a percentage."""
        return f"{sum(self.extended) / len(self.extended):.0%}"


def summarise(blocks: Figures, one_by_one: Figures) -> list[Row]:
    """Rows: the share of extending requests, input characters per turn, and the new part."""
    limits = Settings.model_fields
    at = (
        f"{limits['history_max_messages'].default} items / "
        f"{limits['history_max_chars'].default:,} characters"
    )
    extended = blocks.extended
    return [
        Row(
            "requests extending the previous",
            blocks.share,
            f"{sum(extended)} of {len(extended)}; trimming one exchange at a time: "
            f"{one_by_one.share}",
            f"{TURNS} turns at the default {at}; the earlier part of such a request can come "
            "from the provider's prompt cache",
        ),
        Row(
            "input characters per turn",
            f"{statistics.mean(blocks.sizes):,.0f}",
            f"median {statistics.median(blocks.sizes):,.0f}, max {max(blocks.sizes):,}; "
            f"one at a time: {statistics.mean(one_by_one.sizes):,.0f}",
            "characters of text in the input items of each request (the whole history)",
        ),
        Row(
            "input characters new per turn",
            f"{statistics.mean(blocks.new):,.0f}",
            f"median {statistics.median(blocks.new):,.0f}, max {max(blocks.new):,}; "
            f"one at a time: {statistics.mean(one_by_one.new):,.0f}",
            "what the previous request did not hold (all of it when a request does not extend)",
        ),
    ]


async def rows(redis_url: str) -> list[Row]:
    """The prompt-caching rows, on the given redis-server: block trimming, and for comparison
    the old rule of dropping only as much as needed."""
    blocks = Figures.of(await run_conversation(redis_url))
    one_by_one = Figures.of(await run_conversation(redis_url, trim_to=1.0))
    return summarise(blocks, one_by_one)


def main() -> None:
    """Run the scripted conversation on a private redis-server and print the table."""
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as workdir:
        server = RedisServer(Path(workdir))
        server.start()
        try:
            result = asyncio.run(rows(server.url))
        finally:
            server.stop()
    print_table("Prompt caching: a 100-turn conversation", result)


if __name__ == "__main__":
    main()
