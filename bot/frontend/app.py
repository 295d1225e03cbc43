"""Start-up of the Discord bot: open every resource in one `async with` chain and run."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable

import aiohttp
import discord
import yarl

from bot.config import Settings, require
from bot.core.process import ProcessIdentity
from bot.frontend.client import AssistantBot, Dependencies
from bot.frontend.shards import ShardRunner
from bot.ops.health import HealthCheck, make_app, serve_http
from bot.ops.metrics import BotMetrics
from bot.wiring import build_bot_services, open_redis

log = logging.getLogger(__name__)


def point_at_discord(settings: Settings) -> None:
    """Aim discord.py at DISCORD_API_BASE and DISCORD_GATEWAY_URL (it has no public setting)."""
    discord.http.Route.BASE = settings.discord_api_base
    gateway = yarl.URL(settings.discord_gateway_url)
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = (
        gateway if gateway.path else gateway.with_path("/")
    )


def silence_voice_warnings() -> None:
    """The bot never joins voice, so discord.py's "PyNaCl/davey is not installed" is noise."""
    discord.VoiceClient.warn_nacl = False
    discord.VoiceClient.warn_dave = False


async def run_bot(settings: Settings) -> int:
    """Run the bot until SIGTERM, SIGINT or a fatal gateway error; returns the exit status."""

    token = require(settings.discord_token, "DISCORD_TOKEN").get_secret_value()
    point_at_discord(settings)
    silence_voice_warnings()
    async with (
        contextlib.AsyncExitStack() as stack,
        aiohttp.ClientSession() as session,
        open_redis(settings) as redis,
    ):
        metrics = BotMetrics()
        metrics.watch_redis(redis)
        process = ProcessIdentity.new()
        services = build_bot_services(settings, session, redis, observer=metrics, process=process)
        assert services.running is not None
        metrics.watch_turns(lambda: services.turns.active, lambda: services.turns.queued)
        deps = Dependencies(settings, redis, session, services, http_trace=metrics.discord_trace())
        async with AssistantBot(deps) as bot:
            shards = ShardRunner(bot, redis, process, services.running)
            health = HealthCheck(shards.gateway_problem, redis)
            await stack.enter_async_context(
                serve_http(make_app(health, metrics), settings.http_host, settings.http_port)
            )
            _stop_on_signals(shards.stop)
            try:
                return await shards.run(token)
            except discord.PrivilegedIntentsRequired:
                print(
                    "The Message Content intent is not enabled for this bot: turn it on at "
                    "https://discord.com/developers/applications > your app > Bot > "
                    "Privileged Gateway Intents.",
                    file=sys.stderr,
                )
                return 1
            except discord.LoginFailure:
                print(
                    "Discord refused DISCORD_TOKEN: copy a fresh token from the "
                    "developer portal (Bot tab).",
                    file=sys.stderr,
                )
                return 1
            except (aiohttp.ClientConnectionError, OSError) as exc:
                where, why = settings.discord_api_base, exc.__class__.__name__
                print(
                    f"Could not reach Discord at {where} ({why}): check the network, or "
                    "DISCORD_API_BASE.",
                    file=sys.stderr,
                )
                return 1


def _stop_on_signals(stop: Callable[[], None]) -> None:
    """SIGTERM and SIGINT close the bot cleanly (answers in flight keep what they have)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop)
