"""Server memory: how long `recall` takes on a memory of 1,000 facts.

Fills one server's memory with 1,000 facts of about 150 characters (a mix of public, private
channel and private thread facts, vocabulary drawn from a few hundred words), then times
`MemoryStore.recall` with realistic queries: warm (this process's copy is current: one GET
and the scoring), changed (another process just wrote: the ids and the new fact are read),
first (a fresh process reads and indexes every fact) and the scoring alone. Run as part of
`python -m bench`, on the bench's own redis-server.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable

import redis.asyncio as aioredis

from bench.table import Row, latency_row, timed
from bot.core.tools.context import Caller, Place
from bot.core.tools.memory_store import MemoryStore
from bot.core.tools.ranking import Index

FACTS = 1_000
RECALLS = 300
SEED = 7
_VOCABULARY_TEXT = """server channel role moderator event friday monday release build test deploy
wiki
rules voice stream music game raid tournament schedule birthday pizza coffee tea cat dog python
rust docs meeting backup password invite link bot model answer question emoji sticker banner
theme colour colour dark light night morning europe asia america timezone holiday vacation
project roadmap milestone bug issue ticket support staff admin owner member newcomer welcome
"""
_VOCABULARY = _VOCABULARY_TEXT.split()
QUERIES = ["when is the next raid", "wiki link", "who owns the build", "pizza friday", "xyzzy"]


def _fact(rng: random.Random, n: int) -> str:
    """A fact of about 150 characters."""
    words = rng.choices(_VOCABULARY, k=22)
    return f"Fact {n}: " + " ".join(words)[:140]


def _place(rng: random.Random) -> Place:
    """Where a fact is told: mostly public channels, some private ones and threads."""
    roll = rng.random()
    if roll < 0.7:
        return Place("bench", str(rng.randint(1, 20)), public=True)
    if roll < 0.9:
        return Place("bench", str(rng.randint(21, 25)))
    return Place("bench", str(rng.randint(100, 150)), parent="21", thread="private")


async def rows(url: str) -> list[Row]:
    """Recall latencies on a memory of FACTS facts."""
    client = aioredis.Redis.from_url(url)
    rng = random.Random(SEED)
    try:
        store = MemoryStore(client, max_facts=FACTS)
        other = MemoryStore(client, max_facts=FACTS)
        await store.clear("bench")
        caller = Caller("1", "Bench")
        for n in range(FACTS):
            await store.remember(_place(rng), caller, _fact(rng, n))
        asked_at = Place("bench", "3", public=True)

        def recall(i: int) -> Awaitable[object]:
            return store.recall(asked_at, QUERIES[i % len(QUERIES)])

        warm = await timed(RECALLS, recall)

        async def cold(i: int) -> object:
            await other.remember(asked_at, caller, f"Another fact {i}.")  # moves the version
            start = time.perf_counter()
            found = await store.recall(asked_at, QUERIES[i % len(QUERIES)])
            cold_times.append(time.perf_counter() - start)
            return found

        cold_times: list[float] = []
        await timed(RECALLS // 3, cold)

        def first(i: int) -> Awaitable[object]:
            return MemoryStore(client).recall(asked_at, QUERIES[i % len(QUERIES)])

        first_times = await timed(RECALLS // 10, first)
        index = Index()
        for fact in await store.facts("bench"):
            index.add(int(fact.id), f"{fact.text} {fact.by_name}")
        scoring = []
        for i in range(RECALLS):
            start = time.perf_counter()
            index.rank(QUERIES[i % len(QUERIES)], lambda _n: True, 8)
            scoring.append(time.perf_counter() - start)
        await store.clear("bench")
    finally:
        await client.aclose()
    return [
        latency_row(f"recall, {FACTS} facts (warm)", warm, "one GET, visibility filter, BM25"),
        latency_row(
            f"recall, {FACTS} facts (changed)",
            cold_times,
            "after another process wrote: the ids, and only the new fact, are read",
        ),
        latency_row(
            f"recall, {FACTS} facts (first)",
            first_times,
            "a process's first recall in a server: every fact read and indexed",
        ),
        latency_row("recall scoring alone", scoring, "BM25 over the in-process word index"),
    ]
