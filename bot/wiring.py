"""The composition root: the core's services wired from the settings, shared by the terminal
commands and the Discord bot."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisClusterException

from bot.config import Settings, require
from bot.core.access import AccessRules
from bot.core.control import RunningAnswers
from bot.core.conversation import ConversationService
from bot.core.history import HistoryStore
from bot.core.inflight import InFlightAnswers
from bot.core.keys import LAST_ANSWER, META
from bot.core.last_answers import LastAnswers
from bot.core.limits import UsageLimits
from bot.core.models import ModelCatalog
from bot.core.observe import NO_OBSERVER, Observer
from bot.core.pacing import EditPacer
from bot.core.prefs import Preferences
from bot.core.privacy import ServerData
from bot.core.process import ProcessIdentity
from bot.core.redis_client import RedisClient
from bot.core.request_budget import SharedRequestBudget
from bot.core.responses import ResponsesClient
from bot.core.tools.memory import MemoryTools
from bot.core.tools.memory_store import MemoryStore
from bot.core.turnlock import TurnLock
from bot.core.turns import Running, TurnRunner

REDIS_TIMEOUT_SECONDS = 5.0
"""How long connecting to Redis, or any one command, may take before it fails."""


class StartupError(Exception):
    """A resource the command needs is missing; the message is one line for stderr."""


@dataclass(frozen=True, slots=True)
class Core:
    """The core services wired together for one process."""

    service: ConversationService
    store: HistoryStore


@dataclass(frozen=True, slots=True)
class BotServices:
    """What the Discord bot runs on besides the core: choices, models, pacing, the answers,
    limits and access rules, and the servers' data as a whole (forgetting, deleting)."""

    core: Core
    prefs: Preferences
    catalog: ModelCatalog
    pacer: EditPacer
    last_answers: LastAnswers
    turns: TurnRunner
    limits: UsageLimits
    access: AccessRules
    data: ServerData
    inflight: InFlightAnswers
    memory: MemoryTools
    running: RunningAnswers[Running] | None = None
    """The answers streaming in this process, recorded in Redis for the bot's other processes."""


def redis_client(settings: Settings, *, timeout_seconds: float) -> RedisClient:
    """A client of REDIS_URL, not connected yet: of a Redis Cluster when REDIS_CLUSTER is set
    (it finds the other nodes from the one in the URL), of one server otherwise."""
    url = settings.redis_url.get_secret_value()
    if settings.redis_cluster:
        return RedisCluster.from_url(
            url,
            socket_connect_timeout=timeout_seconds,
            socket_timeout=timeout_seconds,
            health_check_interval=30,
        )
    return aioredis.Redis.from_url(
        url,
        socket_connect_timeout=timeout_seconds,
        socket_timeout=timeout_seconds,
        health_check_interval=30,
    )


def redis_where(settings: Settings) -> str:
    """host:port of REDIS_URL, without credentials."""
    parts = urlsplit(settings.redis_url.get_secret_value())
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}"


@contextlib.asynccontextmanager
async def open_redis(
    settings: Settings, *, timeout_seconds: float = REDIS_TIMEOUT_SECONDS
) -> AsyncIterator[RedisClient]:
    """A Redis client that answered PING, or a StartupError saying where it looked.

    Every command times out, so a server that goes silent (a dead host, a dropped connection)
    fails the turn with a RedisError instead of holding its conversation's lock for good. With
    REDIS_CLUSTER the client is a cluster client; a mismatch between the setting and the
    server (a cluster node without it, a single server with it) stops start-up in one line.
    """
    client = redis_client(settings, timeout_seconds=timeout_seconds)
    try:
        await _first_contact(client, settings)
        yield client
    finally:
        await client.aclose()


async def _first_contact(client: RedisClient, settings: Settings) -> None:
    """PING, and check that the server is a cluster exactly when REDIS_CLUSTER says so."""
    where = redis_where(settings)
    try:
        await client.ping()  # type: ignore[misc]  # redis-py types ping as maybe-sync
        is_cluster = isinstance(client, RedisCluster) or await _cluster_enabled(client)
    except RedisClusterException as exc:
        if "not enabled" in str(exc):
            raise StartupError(
                f"Redis at {where} is not a cluster: unset REDIS_CLUSTER for a single server."
            ) from None
        raise StartupError(
            f"Could not connect to Redis Cluster at {where}: is it running?"
        ) from None
    except (OSError, aioredis.RedisError):
        raise StartupError(f"Could not connect to Redis at {where}: is it running?") from None
    if is_cluster and not settings.redis_cluster:
        raise StartupError(
            f"Redis at {where} is a cluster node: set REDIS_CLUSTER=true to use the cluster."
        )


async def _cluster_enabled(client: aioredis.Redis) -> bool:
    """Whether a single-server client reached a node of a Redis Cluster."""
    try:
        info = await client.info("cluster")
    except aioredis.ResponseError:  # INFO not allowed (ACL): assume what the settings say
        return False
    return bool(info.get("cluster_enabled"))


def make_store(settings: Settings, redis: RedisClient) -> HistoryStore:
    """The history store with the configured limits; a thread's owner and last answer expire
    together with its history."""
    return HistoryStore(
        redis,
        max_items=settings.history_max_messages,
        max_chars=settings.history_max_chars,
        ttl_seconds=settings.history_ttl_seconds,
        companion_keys=(META, LAST_ANSWER),
    )


def make_prefs(settings: Settings, redis: RedisClient) -> Preferences:
    """The per-channel and per-server choices, with the configured defaults."""
    return Preferences(
        redis,
        default_model=settings.default_model,
        default_system=settings.system_prompt,
        default_reasoning=settings.reasoning_effort or "auto",
        default_web="on" if settings.web_search else "off",
        default_fallbacks=settings.fallback_models or "none",
        default_footer="on" if settings.usage_footer else "off",
    )


def make_limits(settings: Settings, redis: RedisClient) -> UsageLimits:
    """The per-member rate and per-server daily budgets from the settings."""
    return UsageLimits(
        redis,
        user_rate_per_minute=settings.user_rate_per_minute,
        limit_admins=settings.limit_admins,
        daily_tokens=settings.server_daily_tokens,
        daily_cost_usd=settings.server_daily_cost_usd,
    )


def make_memory(
    settings: Settings, redis: RedisClient, *, per_server_switch: bool = True
) -> MemoryTools:
    """The server memory and its tools, on when MEMORY_ENABLED is (and, in a server, its own
    switch); `per_server_switch=False` is the terminal's own server, which has no switch."""
    store = MemoryStore(redis, max_facts=settings.memory_max_facts)
    return MemoryTools(
        store,
        enabled=settings.memory_enabled,
        per_server_switch=per_server_switch,
        max_rounds=settings.max_tool_rounds,
    )


def build_core(settings: Settings, session: aiohttp.ClientSession, redis: RedisClient) -> Core:
    """Wire the Responses client, history store and turn lock into a conversation service."""
    api_key = require(settings.openrouter_api_key, "OPENROUTER_API_KEY")
    client = ResponsesClient(
        session, base_url=settings.openrouter_base_url, api_key=api_key.get_secret_value()
    )
    store = make_store(settings, redis)
    service = ConversationService(
        client,
        store,
        TurnLock(redis),
        max_output_tokens=settings.max_output_tokens,
        image_history=settings.image_history,
    )
    return Core(service=service, store=store)


def build_bot_services(
    settings: Settings,
    session: aiohttp.ClientSession,
    redis: RedisClient,
    *,
    observer: Observer = NO_OBSERVER,
    process: ProcessIdentity | None = None,
) -> BotServices:
    """The core plus the services the Discord bot needs, each from its own settings; the
    answers and the pacing report to `observer` (metrics). With `process` (the bot), the
    global request budget is shared with the bot's other processes and running answers are
    recorded in Redis, so Stop finds them from any process."""
    core = build_core(settings, session, redis)
    prefs = make_prefs(settings, redis)
    pacer = EditPacer(
        min_interval=settings.edit_interval_seconds,
        global_per_second=settings.discord_requests_per_second,
        on_wait=observer.pacer_waited,
        global_gate=None if process is None else shared_budget(settings, redis),
    )
    running = RunningAnswers[Running](redis, process) if process is not None else None
    last_answers = LastAnswers(redis)
    catalog = ModelCatalog(session, redis, base_url=settings.openrouter_base_url)
    limits = make_limits(settings, redis)
    inflight = InFlightAnswers(redis)
    memory = make_memory(settings, redis)
    turns = TurnRunner(
        core.service,
        prefs,
        pacer,
        last_answers,
        queue_depth=settings.queue_depth,
        web_max_results=settings.web_max_results,
        inflight=inflight,
        observer=observer,
        running=running,
        record_usage=limits.record,
        context_of=catalog.context_length,
        tools=memory,
    )
    return BotServices(
        core=core,
        prefs=prefs,
        catalog=catalog,
        pacer=pacer,
        last_answers=last_answers,
        turns=turns,
        limits=limits,
        access=AccessRules(redis),
        data=ServerData(redis, core.store),
        inflight=inflight,
        memory=memory,
        running=running,
    )


def shared_budget(settings: Settings, redis: RedisClient) -> SharedRequestBudget:
    """DISCORD_REQUESTS_PER_SECOND for all the bot's processes; without Redis, this process
    takes its shards' share of it."""
    count, ids = settings.shards
    return SharedRequestBudget(
        redis, rate=settings.discord_requests_per_second, local_share=len(ids) / count
    )
