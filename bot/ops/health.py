"""The bot's small HTTP server: `/healthz` (gateway connected and Redis answering) and
`/metrics` (Prometheus text format), on HTTP_HOST:HTTP_PORT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import discord
import redis.asyncio as aioredis
from aiohttp import web
from redis.asyncio.cluster import RedisCluster

from bot.core.redis_client import RedisClient
from bot.ops.metrics import CONTENT_TYPE, BotMetrics
from bot.wiring import StartupError

log = logging.getLogger(__name__)

PING_TIMEOUT_SECONDS = 2.0


def gateway_problem(client: discord.Client) -> str | None:
    """Why the bot's gateway connection is not usable now, or None when it is.

    Connected means the websocket is open (discord.py has identified or resumed on it); READY
    itself may come seconds later, while the guilds arrive, and events are handled meanwhile."""
    if client.is_closed():
        return "the Discord gateway connection is closed (the bot is stopping)"
    if isinstance(client, discord.AutoShardedClient):
        return _shards_problem(client)
    ws: discord.gateway.DiscordWebSocket | None = client.ws  # None until the first connection
    if ws is None:
        return "the Discord gateway is not connected yet"
    if not ws.open:
        return "the Discord gateway connection is down (reconnecting)"
    return None


def _shards_problem(client: discord.AutoShardedClient) -> str | None:
    """Why some shard of this process is not connected, or None when all of them are."""
    shards = client.shards  # a shard appears once its first connection is made
    expected = client.shard_ids or range(client.shard_count or 1)
    if not shards:
        return "the Discord gateway is not connected yet"
    down = [str(shard) for shard in expected if shard not in shards or shards[shard].is_closed()]
    if not down:
        return None
    if (client.shard_count or 1) == 1:
        return "the Discord gateway connection is down (reconnecting)"
    return f"the Discord gateway connection of shard {', '.join(down)} is down (reconnecting)"


class HealthCheck:
    """Healthy while the gateway is connected and Redis (every master of a cluster) answers PING
    quickly."""

    def __init__(
        self,
        gateway: Callable[[], str | None],
        redis: RedisClient,
        *,
        timeout_seconds: float = PING_TIMEOUT_SECONDS,
    ) -> None:
        self._gateway = gateway
        self._redis = redis
        self._timeout = timeout_seconds

    async def problem(self) -> str | None:
        """One line saying what is wrong, or None when healthy."""
        gateway = self._gateway()
        if gateway is not None:
            return gateway
        try:
            async with asyncio.timeout(self._timeout):
                await self._ping()
        except TimeoutError:
            return f"Redis did not answer PING within {self._timeout:g} s"
        except (aioredis.RedisError, OSError) as exc:
            return f"Redis failed: {type(exc).__name__}"
        return None

    async def _ping(self) -> None:
        """PING the server, or every master of a cluster (each holds a share of the slots)."""
        if isinstance(self._redis, RedisCluster):
            await self._redis.ping(target_nodes=RedisCluster.PRIMARIES)  # type: ignore[misc]
        else:
            await self._redis.ping()  # type: ignore[misc]  # redis-py types ping as maybe-sync


def make_app(health: HealthCheck, metrics: BotMetrics) -> web.Application:
    """The aiohttp application with /healthz and /metrics."""

    async def healthz(_request: web.Request) -> web.Response:
        problem = await health.problem()
        if problem is None:
            return web.Response(text="ok\n")
        return web.Response(status=503, text=problem + "\n")

    async def serve_metrics(_request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", serve_metrics)
    return app


@contextlib.asynccontextmanager
async def serve_http(app: web.Application, host: str, port: int) -> AsyncIterator[int | None]:
    """Serve `app` on host:port while the block runs; yields the bound port (None when off)."""
    if port == 0:
        yield None
        return
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            raise StartupError(
                f"Could not listen on {host}:{port} for /healthz and /metrics "
                f"({exc.strerror or exc}): set HTTP_PORT to a free port, or 0 to turn it off."
            ) from None
        log.debug("Serving /healthz and /metrics on http://%s:%d", host, port)
        yield port
    finally:
        await runner.cleanup()
