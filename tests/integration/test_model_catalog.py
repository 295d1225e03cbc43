"""OpenRouter's model list: fetched once (shared, short timeout), cached, used to suggest names."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from bot.core.models import CACHE_KEY, FAILURE_SECONDS, MEMORY_SECONDS, ModelCatalog

MODELS = [
    "openai/gpt-4o-mini",
    "openai/gpt-4o",
    "anthropic/claude-3.5-sonnet",
    "openai/o3-mini",
    "mystery/model",
]
MODALITIES = {
    "openai/gpt-4o-mini": ["text", "image", "file"],
    "openai/gpt-4o": ["text", "image"],
    "anthropic/claude-3.5-sonnet": ["image", "text"],
    "openai/o3-mini": ["text"],
}


class ModelsServer:
    """A local /models endpoint that counts its calls and can be made to fail or hang."""

    def __init__(self) -> None:
        self.calls = 0
        self.status = 200
        self.hang = False
        self.arrived = asyncio.Event()
        self.released = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        """Answer the list, an error status, or nothing until `released` is set."""
        self.calls += 1
        self.arrived.set()
        if self.hang:
            await self.released.wait()
        if self.status != 200:
            return web.json_response({"error": {"message": "down"}}, status=self.status)
        return web.json_response({"data": [_entry(m) for m in MODELS]})


def _entry(model: str) -> dict[str, object]:
    """One /models entry as OpenRouter lists it, input modalities included where MODALITIES
    says (a model missing there has no architecture field)."""
    entry: dict[str, object] = {"id": model, "name": model}
    if model in MODALITIES:
        entry["architecture"] = {"input_modalities": MODALITIES[model], "output_modalities": []}
    return entry


@pytest.fixture
async def models_server() -> AsyncIterator[tuple[ModelsServer, str]]:
    """The server and its base URL on 127.0.0.1."""
    server = ModelsServer()
    app = web.Application()
    app.router.add_get("/api/v1/models", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield server, f"http://127.0.0.1:{port}/api/v1"
    finally:
        server.released.set()
        await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """One HTTP session, as the bot has."""
    async with aiohttp.ClientSession() as http:
        yield http


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        """The current fake time."""
        return self.now


async def test_names_are_fetched_once_and_cached(
    models_server: tuple[ModelsServer, str], redis_client: aioredis.Redis
) -> None:
    """The second lookup comes from Redis, not the network."""
    server, base = models_server
    async with aiohttp.ClientSession() as session:
        catalog = ModelCatalog(session, redis_client, base_url=base)
        assert await catalog.names() == sorted(MODELS)
        assert await catalog.names() == sorted(MODELS)
    assert server.calls == 1


async def test_matching_and_check_suggest_close_names(
    models_server: tuple[ModelsServer, str], redis_client: aioredis.Redis
) -> None:
    """Autocomplete filters by substring; an unknown name gets the closest real ones."""
    _, base = models_server
    async with aiohttp.ClientSession() as session:
        catalog = ModelCatalog(session, redis_client, base_url=base)
        assert await catalog.matching("4o") == ["openai/gpt-4o", "openai/gpt-4o-mini"]
        assert await catalog.check("openai/gpt-4o") == (True, [])
        known, close = await catalog.check("openai/gpt4o-mini")
    assert not known
    assert close[0] == "openai/gpt-4o-mini"


async def test_unreachable_list_accepts_any_name(
    models_server: tuple[ModelsServer, str], redis_client: aioredis.Redis
) -> None:
    """When the list cannot be had, names are not refused (and nothing is cached)."""
    server, base = models_server
    server.status = 503
    async with aiohttp.ClientSession() as session:
        catalog = ModelCatalog(session, redis_client, base_url=base)
        assert await catalog.check("any/model") == (True, [])
    assert await redis_client.get("bot:models") is None


async def test_concurrent_callers_share_one_fetch(
    models_server: tuple[ModelsServer, str],
    redis_client: aioredis.Redis,
    session: aiohttp.ClientSession,
) -> None:
    """Many keystrokes on a cold cache make a single request and all get the list."""
    server, base = models_server
    catalog = ModelCatalog(session, redis_client, base_url=base)
    results = await asyncio.gather(*(catalog.names() for _ in range(8)))
    assert results == [sorted(MODELS)] * 8
    assert server.calls == 1


async def test_a_cancelled_caller_does_not_cancel_the_shared_fetch(
    models_server: tuple[ModelsServer, str],
    redis_client: aioredis.Redis,
    session: aiohttp.ClientSession,
) -> None:
    """An autocomplete that Discord gave up on leaves the fetch running for the next caller."""
    server, base = models_server
    server.hang = True
    catalog = ModelCatalog(session, redis_client, base_url=base)
    first = asyncio.create_task(catalog.names())
    await server.arrived.wait()
    second = asyncio.create_task(catalog.names())
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    server.released.set()
    assert await second == sorted(MODELS)
    assert server.calls == 1


async def test_a_failure_is_remembered_for_a_while(
    models_server: tuple[ModelsServer, str],
    redis_client: aioredis.Redis,
    session: aiohttp.ClientSession,
) -> None:
    """After a failed fetch no request is made until the failure has aged out."""
    server, base = models_server
    server.status = 503
    clock = FakeClock()
    catalog = ModelCatalog(session, redis_client, base_url=base, clock=clock)
    assert await catalog.names() == []
    assert await catalog.matching("gpt") == []
    assert await catalog.check("any/model") == (True, [])
    assert server.calls == 1
    clock.now += FAILURE_SECONDS + 1
    server.status = 200
    assert await catalog.names() == sorted(MODELS)
    assert server.calls == 2


async def test_a_hanging_server_is_given_up_on(
    models_server: tuple[ModelsServer, str],
    redis_client: aioredis.Redis,
    session: aiohttp.ClientSession,
) -> None:
    """A list that never arrives ends in the short timeout: names are accepted, not refused."""
    server, base = models_server
    server.hang = True
    catalog = ModelCatalog(session, redis_client, base_url=base, timeout=0.05)
    assert await catalog.check("any/model") == (True, [])
    assert await catalog.matching("") == []
    assert server.calls == 1
    assert await redis_client.get(CACHE_KEY) is None


@pytest.mark.parametrize(
    "corrupt",
    [
        b"not json",
        b"\xff\xfe",
        b'{"data": []}',
        b'"openai/gpt-4o"',
        b'["ok", 3]',
        b"null",
        b'{"models": {"a/b": 3}}',
        b'{"models": ["a/b"]}',
    ],
)
async def test_a_corrupt_cached_value_is_a_miss(
    models_server: tuple[ModelsServer, str],
    redis_client: aioredis.Redis,
    session: aiohttp.ClientSession,
    corrupt: bytes,
) -> None:
    """A cached value that is not a JSON list of strings is refetched and overwritten."""
    server, base = models_server
    await redis_client.set(CACHE_KEY, corrupt)
    catalog = ModelCatalog(session, redis_client, base_url=base)
    assert await catalog.names() == sorted(MODELS)
    assert server.calls == 1
    cached = json.loads(await redis_client.get(CACHE_KEY))
    assert sorted(cached["models"]) == sorted(MODELS)


async def test_the_list_is_kept_in_memory_for_a_while(
    models_server: tuple[ModelsServer, str],
    redis_client: aioredis.Redis,
    session: aiohttp.ClientSession,
) -> None:
    """Keystrokes are answered from memory; after it ages out Redis is asked again."""
    server, base = models_server
    clock = FakeClock()
    catalog = ModelCatalog(session, redis_client, base_url=base, clock=clock)
    assert await catalog.names() == sorted(MODELS)
    await redis_client.set(CACHE_KEY, json.dumps(["cached/elsewhere"]))
    assert await catalog.names() == sorted(MODELS)
    clock.now += MEMORY_SECONDS + 1
    assert await catalog.names() == ["cached/elsewhere"]
    assert server.calls == 1


async def test_a_failed_refresh_keeps_the_known_names(
    models_server: tuple[ModelsServer, str],
    redis_client: aioredis.Redis,
    session: aiohttp.ClientSession,
) -> None:
    """When the cache has expired and the service is down, the last list still answers."""
    server, base = models_server
    clock = FakeClock()
    catalog = ModelCatalog(session, redis_client, base_url=base, clock=clock)
    assert await catalog.names() == sorted(MODELS)
    await redis_client.delete(CACHE_KEY)
    server.status = 503
    clock.now += MEMORY_SECONDS + 1
    known, close = await catalog.check("openai/gpt4o")
    assert not known
    assert close[0] == "openai/gpt-4o"
    assert server.calls == 2


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("openai/gpt-4o", True),
        ("anthropic/claude-3.5-sonnet", True),
        ("openai/gpt-4o:online", True),
        ("openai/o3-mini", False),
        ("openai/o3-mini:nitro", False),
        ("mystery/model", None),
        ("not/listed", None),
    ],
)
async def test_takes_images_reads_the_input_modalities(
    models_server: tuple[ModelsServer, str],
    redis_client: aioredis.Redis,
    session: aiohttp.ClientSession,
    model: str,
    expected: bool | None,
) -> None:
    """A listed model reads images when "image" is among its input modalities; a model the
    list does not describe is unknown (None), a routing suffix is looked up by its base."""
    _, base = models_server
    catalog = ModelCatalog(session, redis_client, base_url=base)
    assert await catalog.takes_images(model) is expected


async def test_modalities_survive_the_redis_cache(
    models_server: tuple[ModelsServer, str],
    redis_client: aioredis.Redis,
    session: aiohttp.ClientSession,
) -> None:
    """A second catalog (another process) reads the modalities from Redis, not the network."""
    server, base = models_server
    await ModelCatalog(session, redis_client, base_url=base).names()
    again = ModelCatalog(session, redis_client, base_url=base)
    assert await again.takes_images("openai/o3-mini") is False
    assert await again.image_models() == [
        "anthropic/claude-3.5-sonnet",
        "openai/gpt-4o",
        "openai/gpt-4o-mini",
    ]
    assert server.calls == 1


async def test_an_older_cached_list_of_names_still_reads(
    models_server: tuple[ModelsServer, str],
    redis_client: aioredis.Redis,
    session: aiohttp.ClientSession,
) -> None:
    """The older cache form (a list of names) answers names, with modalities unknown."""
    server, base = models_server
    await redis_client.set(CACHE_KEY, json.dumps(["old/one", "old/two"]))
    catalog = ModelCatalog(session, redis_client, base_url=base)
    assert await catalog.names() == ["old/one", "old/two"]
    assert await catalog.takes_images("old/one") is None
    assert await catalog.image_models() == []
    assert server.calls == 0


async def test_an_unreachable_list_leaves_images_unknown(
    models_server: tuple[ModelsServer, str],
    redis_client: aioredis.Redis,
    session: aiohttp.ClientSession,
) -> None:
    """Without the list no model is refused images: the answer is None (try it)."""
    server, base = models_server
    server.status = 503
    catalog = ModelCatalog(session, redis_client, base_url=base)
    assert await catalog.takes_images("openai/o3-mini") is None
