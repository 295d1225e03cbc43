"""/healthz and /metrics of the ops server with a real discord.py client against the emulator
and the test redis: healthy only while the gateway is connected and Redis answers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import discord
import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as ClusterClient

from bot.ops.health import HealthCheck, gateway_problem, make_app, serve_http
from bot.ops.metrics import BotMetrics
from bot.wiring import StartupError
from tests.e2e.conftest import ClientStarter
from tests.e2e.discord_emulator import DiscordEmulator
from tests.support.redis_cluster import RedisCluster
from tests.support.redis_server import RedisServer, free_port

pytestmark = pytest.mark.e2e


async def get(url: str) -> tuple[int, str]:
    """GET a URL; its status and body."""
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, await resp.text()


@pytest.fixture
async def down_redis() -> AsyncIterator[aioredis.Redis]:
    """A Redis client aimed at a port nobody listens on."""
    client = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")
    try:
        yield client
    finally:
        await client.aclose()


async def test_healthz_follows_the_gateway(
    emulator: DiscordEmulator,
    start_client: ClientStarter,
    redis_client: aioredis.Redis,
) -> None:
    """503 before READY, 200 while connected, 503 with a reason while Discord is unreachable,
    200 again once the client resumed."""
    client = discord.Client(intents=discord.Intents.none())
    port = free_port()
    app = make_app(HealthCheck(lambda: gateway_problem(client), redis_client), BotMetrics())
    url = f"http://127.0.0.1:{port}/healthz"
    async with serve_http(app, "127.0.0.1", port):
        status, text = await get(url)
        assert (status, text) == (503, "the Discord gateway is not connected yet\n")

        await start_client(client)
        await asyncio.ensure_future(client.wait_until_ready())  # runs once login began
        assert await get(url) == (200, "ok\n")

        disconnected = asyncio.ensure_future(client.wait_for("disconnect"))
        await emulator.gateway.drop_all()
        await disconnected
        status, text = await get(url)
        assert (status, text) == (503, "the Discord gateway connection is down (reconnecting)\n")

        emulator.gateway.refusing = False
        await client.wait_for("resumed")
        assert await get(url) == (200, "ok\n")

        await client.close()
        assert (await get(url))[0] == 503


async def test_healthz_503_when_redis_is_down(down_redis: aioredis.Redis) -> None:
    """A connected gateway with a Redis that refuses connections is unhealthy, and says why."""
    port = free_port()
    app = make_app(HealthCheck(lambda: None, down_redis), BotMetrics())
    async with serve_http(app, "127.0.0.1", port):
        status, text = await get(f"http://127.0.0.1:{port}/healthz")
    assert status == 503
    assert text == "Redis failed: ConnectionError\n"


async def test_port_in_use_is_one_clear_line(redis_server: RedisServer) -> None:
    """A port already taken stops start-up with a sentence naming HTTP_PORT."""
    app = make_app(HealthCheck(lambda: None, aioredis.Redis()), BotMetrics())
    with pytest.raises(StartupError, match=r"Could not listen on 127\.0\.0\.1:\d+ .*HTTP_PORT"):
        async with serve_http(app, "127.0.0.1", redis_server.port):
            pass


async def test_http_port_0_serves_nothing() -> None:
    """HTTP_PORT=0 turns the server off."""
    app = make_app(HealthCheck(lambda: None, aioredis.Redis()), BotMetrics())
    async with serve_http(app, "127.0.0.1", 0) as bound:
        assert bound is None


async def test_healthz_503_when_one_cluster_master_hangs(redis_cluster: RedisCluster) -> None:
    """On a cluster every master must answer: one frozen master (not the client's default
    node) makes /healthz 503 within the PING timeout, and 200 again once it answers."""
    client = ClusterClient.from_url(redis_cluster.url)
    try:
        await client.initialize()
        default = client.get_default_node()
        other = next(node for node in client.get_primaries() if node.name != default.name)
        health = HealthCheck(lambda: None, client, timeout_seconds=0.2)
        assert await health.problem() is None
        with redis_cluster.frozen(other.port):
            assert await health.problem() == "Redis did not answer PING within 0.2 s"
        assert await health.problem() is None
    finally:
        await client.aclose()
