"""OpenRouter's model list: fetched once, cached in Redis, used to suggest and check names."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from bot.core.models import ModelCatalog

MODELS = ["openai/gpt-4o-mini", "openai/gpt-4o", "anthropic/claude-3.5-sonnet"]


class ModelsServer:
    """A local /models endpoint that counts its calls and can be made to fail."""

    def __init__(self) -> None:
        self.calls = 0
        self.status = 200

    async def handle(self, request: web.Request) -> web.Response:
        self.calls += 1
        if self.status != 200:
            return web.json_response({"error": {"message": "down"}}, status=self.status)
        return web.json_response({"data": [{"id": m, "name": m} for m in MODELS]})


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
        await runner.cleanup()


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
