"""`python -m bot check`: test a configuration before going live, one line per check;
`python -m bot sync [--guild ID]`: register the slash commands with Discord now.

Each check has a timeout and ends in a verdict: ✓ passed, ! a warning (allowed), ✗ failed,
with one sentence that names exactly what is wrong. The exit status is 0 only when no check
failed. Secrets are never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import difflib
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TextIO
from urllib.parse import urlsplit

import aiohttp
import redis.asyncio as aioredis
from pydantic import SecretStr
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisClusterException

from bot.config import ConfigError, Settings, load_settings
from bot.core.keys import commands_hash
from bot.core.redis_client import RedisClient
from bot.wiring import redis_client, redis_where

CHECK_TIMEOUT_SECONDS = 10.0
MESSAGE_CONTENT_FLAGS = (1 << 18) | (1 << 19)
"""GATEWAY_MESSAGE_CONTENT and GATEWAY_MESSAGE_CONTENT_LIMITED: the intent is enabled."""
INTENT_HELP = (
    "turn it on at https://discord.com/developers/applications > your app > Bot > "
    "Privileged Gateway Intents"
)
Mark = Literal["✓", "!", "✗"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of one check: a mark and one sentence."""

    mark: Mark
    sentence: str

    @property
    def failed(self) -> bool:
        """Whether this verdict fails the whole check."""
        return self.mark == "✗"


def passed(sentence: str) -> Verdict:
    """A check that passed."""
    return Verdict("✓", sentence)


def warning(sentence: str) -> Verdict:
    """A check that passed with something the owner should know."""
    return Verdict("!", sentence)


def failed(sentence: str) -> Verdict:
    """A check that failed."""
    return Verdict("✗", sentence)


@dataclass
class Context:
    """What the checks share: settings, an HTTP session, Redis (if it answered), Discord's app."""

    settings: Settings
    session: aiohttp.ClientSession
    redis: RedisClient | None = None
    application_id: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)


class _HttpError(Exception):
    """A request got no usable answer; the message is the sentence to show."""


def run_check_command(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Run `check` or `sync` from parsed arguments; returns the exit status."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        _print(out, failed(f"Settings: {exc}"))
        return 1
    if args.command == "sync":
        return asyncio.run(sync(settings, args.guild, out))
    return asyncio.run(check(settings, out))


def _print(out: TextIO, verdict: Verdict) -> None:
    """Write one verdict line."""
    out.write(f"{verdict.mark} {verdict.sentence}\n")
    out.flush()


async def check(settings: Settings, out: TextIO = sys.stdout) -> int:
    """Run every check in order, printing each verdict; 0 when none failed."""
    verdicts = [passed("Settings are valid.")]
    _print(out, verdicts[0])
    async with aiohttp.ClientSession() as session, _redis_client(settings) as redis:
        context = Context(settings, session, redis)
        for run in CHECKS:
            verdict = await _bounded(run, context)
            _print(out, verdict)
            verdicts.append(verdict)
    return 1 if any(v.failed for v in verdicts) else 0


async def _bounded(run: Callable[[Context], Awaitable[Verdict]], context: Context) -> Verdict:
    """Run one check under its timeout; an unreachable service is a failure with a sentence."""
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            return await run(context)
    except TimeoutError:
        name = (run.__doc__ or run.__name__).split(":")[0]
        return failed(f"{name}: no answer within {CHECK_TIMEOUT_SECONDS:g} s.")
    except _HttpError as exc:
        return failed(str(exc))
    except ConfigError as exc:
        return failed(str(exc))


@contextlib.asynccontextmanager
async def _redis_client(settings: Settings) -> AsyncIterator[RedisClient]:
    """A Redis client with short timeouts (it may not answer: the check says so); a cluster
    client with REDIS_CLUSTER."""
    client = redis_client(settings, timeout_seconds=3)
    try:
        yield client
    finally:
        await client.aclose()


async def check_redis(context: Context) -> Verdict:
    """Redis: reachable, a cluster exactly when REDIS_CLUSTER says so, and whether it keeps
    data across a restart (on every master of a cluster)."""
    where = redis_where(context.settings)
    redis = context.redis
    assert redis is not None
    problem = await _reach(redis, where)
    if problem is not None:
        context.redis = None
        return failed(problem)
    try:
        aof, rdb = await _persistence(redis)
    except aioredis.RedisError:
        return warning(f"Redis at {where} answers; its persistence settings cannot be read.")
    if not aof and not rdb:
        return warning(
            f"Redis at {where} answers but keeps nothing on disk (no AOF, no RDB save points): "
            "a restart forgets every conversation; set appendonly yes."
        )
    kept = "append-only file" if aof else "RDB snapshots only"
    return passed(f"Redis at {where} answers and keeps data on disk ({kept}).")


async def _reach(redis: RedisClient, where: str) -> str | None:
    """Why Redis cannot be used as configured (no answer, a cluster or not); None if it can."""
    try:
        await redis.ping()  # type: ignore[misc]  # redis-py types ping as maybe-sync
        return await _cluster_mismatch(redis, where)
    except RedisClusterException as exc:
        if "not enabled" in str(exc):
            return f"Redis at {where} is not a cluster: unset REDIS_CLUSTER."
        return f"Redis Cluster at {where} (REDIS_URL) did not answer."
    except (aioredis.RedisError, OSError) as exc:
        return f"Redis at {where} (REDIS_URL) did not answer: {type(exc).__name__}."


async def _cluster_mismatch(redis: RedisClient, where: str) -> str | None:
    """What is wrong when a single-server client reached a cluster node; None otherwise."""
    if isinstance(redis, RedisCluster):
        return None
    try:
        info = await redis.info("cluster")
    except aioredis.ResponseError:
        return None
    if info.get("cluster_enabled"):
        return f"Redis at {where} is a cluster node: set REDIS_CLUSTER=true."
    return None


async def _persistence(redis: RedisClient) -> tuple[bool, bool]:
    """Whether the append-only file is on, and whether RDB save points are set: on every
    master of a cluster, or on the one server."""
    if isinstance(redis, RedisCluster):
        nodes = redis.get_primaries()
        replies = [
            (
                await redis.config_get("appendonly", target_nodes=node),
                await redis.config_get("save", target_nodes=node),
            )
            for node in nodes
        ]
    else:
        replies = [(await redis.config_get("appendonly"), await redis.config_get("save"))]
    aof = all(_config_value(appendonly, "appendonly") == "yes" for appendonly, _ in replies)
    rdb = all(bool(_config_value(save, "save").strip()) for _, save in replies)
    return aof, rdb


def _config_value(reply: Any, name: str) -> str:
    """One value from a CONFIG GET reply (bytes or str keys)."""
    for key, value in dict(reply).items():
        if (key.decode() if isinstance(key, bytes) else key) == name:
            return value.decode() if isinstance(value, bytes) else str(value)
    return ""


async def _get_json(
    session: aiohttp.ClientSession, url: str, service: str, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """GET a JSON document; the status and body, or _HttpError when the service is unreachable."""
    try:
        async with session.get(url, headers=headers or {}) as resp:
            body = await resp.json(content_type=None) if resp.status < 500 else None
            return resp.status, body
    except (aiohttp.ClientError, ValueError) as exc:
        host = urlsplit(url).netloc
        raise _HttpError(f"Could not reach {service} at {host}: {type(exc).__name__}.") from None


async def check_openrouter_key(context: Context) -> Verdict:
    """OpenRouter key: accepted, with credits left."""
    key = context.settings.openrouter_api_key
    if key is None or not key.get_secret_value().strip():
        return failed("OPENROUTER_API_KEY is not set: add it to .env or the environment.")
    url = f"{context.settings.openrouter_base_url}/key"
    headers = {"Authorization": f"Bearer {key.get_secret_value()}"}
    status, body = await _get_json(context.session, url, "OpenRouter", headers)
    if status in (401, 403):
        return failed(f"OPENROUTER_API_KEY was refused by OpenRouter ({status}).")
    data = body.get("data") if isinstance(body, dict) else None
    if status != 200 or not isinstance(data, dict):
        return failed(f"OpenRouter answered GET /key with {status} instead of the key's details.")
    limit, usage = data.get("limit"), float(data.get("usage") or 0)
    remaining = data.get("limit_remaining")
    if limit is None:
        return passed(f"OPENROUTER_API_KEY is valid (no spending limit; ${usage:.2f} used).")
    if remaining is not None and float(remaining) <= 0:
        return failed(
            f"OPENROUTER_API_KEY has no credits left: its limit of ${float(limit):.2f} is used up."
        )
    left = float(remaining) if remaining is not None else float(limit) - usage
    return passed(f"OPENROUTER_API_KEY is valid: ${left:.2f} of its ${float(limit):.2f} left.")


async def check_models(context: Context) -> Verdict:
    """Models: DEFAULT_MODEL (and FALLBACK_MODELS, if set) offered by OpenRouter."""
    settings = context.settings
    url = f"{settings.openrouter_base_url}/models"
    status, body = await _get_json(context.session, url, "OpenRouter")
    data = body.get("data") if isinstance(body, dict) else None
    if status != 200 or not isinstance(data, list):
        return failed(f"OpenRouter answered GET /models with {status} instead of the model list.")
    offered = {str(m["id"]) for m in data if isinstance(m, dict) and "id" in m}
    wanted = [("DEFAULT_MODEL", settings.default_model)]
    wanted += [("FALLBACK_MODELS", name) for name in _fallback_models(settings)]
    for setting, name in wanted:
        if name not in offered:
            close = difflib.get_close_matches(name, sorted(offered), n=3, cutoff=0.4)
            hint = f" (closest: {', '.join(close)})" if close else ""
            return failed(f"{setting} {name!r} is not offered by OpenRouter{hint}.")
    names = ", ".join(name for _, name in wanted)
    return passed(f"OpenRouter offers {names}.")


def _fallback_models(settings: Settings) -> list[str]:
    """FALLBACK_MODELS, when this version has that setting (a list or a comma-separated text)."""
    value = getattr(settings, "fallback_models", None)
    if not value:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    return [str(item).strip() for item in items if str(item).strip()]


def _discord_headers(settings: Settings) -> dict[str, str]:
    """The bot's Authorization header (ConfigError when DISCORD_TOKEN is missing)."""
    token = settings.discord_token
    if token is None or not token.get_secret_value().strip():
        raise ConfigError("DISCORD_TOKEN is not set: add it to .env or the environment.")
    return {"Authorization": f"Bot {token.get_secret_value()}"}


async def check_discord_token(context: Context) -> Verdict:
    """Discord token: accepted by Discord."""
    headers = _discord_headers(context.settings)
    url = f"{context.settings.discord_api_base}/users/@me"
    status, body = await _get_json(context.session, url, "Discord", headers)
    if status == 401:
        return failed("DISCORD_TOKEN was refused by Discord (401).")
    if status != 200 or not isinstance(body, dict):
        return failed(f"Discord answered GET /users/@me with {status}.")
    context.facts["discord_user"] = f"{body.get('username', '?')} ({body.get('id', '?')})"
    return passed(f"DISCORD_TOKEN is valid: the bot is {context.facts['discord_user']}.")


async def check_intent(context: Context) -> Verdict:
    """Message Content intent: enabled for the application."""
    if "discord_user" not in context.facts:
        return failed("Message Content intent not checked: DISCORD_TOKEN must work first.")
    flags = await _read_application(context)
    if not flags & MESSAGE_CONTENT_FLAGS:
        return failed(f"The Message Content intent is off for this bot: {INTENT_HELP}.")
    return passed("The Message Content intent is enabled.")


async def _read_application(context: Context) -> int:
    """Note the application's id from GET /applications/@me; its flags."""
    headers = _discord_headers(context.settings)
    url = f"{context.settings.discord_api_base}/applications/@me"
    status, body = await _get_json(context.session, url, "Discord", headers)
    if status != 200 or not isinstance(body, dict) or "id" not in body:
        raise _HttpError(f"Discord answered GET /applications/@me with {status}.")
    context.application_id = str(body["id"])
    return int(body.get("flags") or 0)


async def check_commands(context: Context) -> Verdict:
    """Slash commands: registered with Discord and the same as this version's."""
    if context.application_id is None:
        return failed("Slash commands not checked: DISCORD_TOKEN must work first.")
    guild_id = context.settings.dev_guild_id
    scope, payload, digest = await command_payload(context.settings, context.session, guild_id)
    url = _commands_url(context.settings, context.application_id, guild_id)
    headers = _discord_headers(context.settings)
    status, body = await _get_json(context.session, url, "Discord", headers)
    if status != 200 or not isinstance(body, list):
        return failed(f"Discord answered GET {urlsplit(url).path} with {status}.")
    registered = {str(c.get("name")) for c in body if isinstance(c, dict)}
    wanted = {str(c["name"]) for c in payload}
    stored = await _stored_digest(context.redis, scope)
    same_version = stored == digest
    if registered == wanted and same_version:
        return passed(f"The {len(wanted)} slash commands are registered ({scope}) and current.")
    if registered == wanted:
        return warning(
            f"The slash commands changed since they were last synced ({scope}): the bot syncs "
            "them when it starts, or run `python -m bot sync`."
        )
    missing = ", ".join(f"/{name}" for name in sorted(wanted - registered)) or "none"
    extra = ", ".join(f"/{name}" for name in sorted(registered - wanted)) or "none"
    differs = f"Discord's slash commands ({scope}) differ: missing {missing}; extra {extra}"
    if not registered:
        differs = f"No slash commands are registered with Discord ({scope})"
    if same_version:
        return failed(f"{differs}; run `python -m bot sync`.")
    return warning(f"{differs}; the bot syncs them when it starts, or run `python -m bot sync`.")


async def _stored_digest(redis: RedisClient | None, scope: str) -> str | None:
    """The digest of the commands the bot last synced to a scope, if Redis knows it."""
    if redis is None:
        return None
    try:
        raw = await redis.get(commands_hash(scope))
    except (aioredis.RedisError, OSError):
        return None
    return raw.decode() if isinstance(raw, bytes) else raw


def _commands_url(settings: Settings, application_id: str, guild_id: int | None) -> str:
    """Where a scope's commands live on Discord."""
    base = f"{settings.discord_api_base}/applications/{application_id}"
    return f"{base}/guilds/{guild_id}/commands" if guild_id else f"{base}/commands"


async def command_payload(
    settings: Settings, session: aiohttp.ClientSession, guild_id: int | None
) -> tuple[str, list[dict[str, Any]], str]:
    """The slash commands of this version as the bot syncs them: scope, payload and digest."""
    from bot.frontend.client import EXTENSIONS, AssistantBot, Dependencies
    from bot.wiring import build_bot_services

    # Nothing is sent to OpenRouter or Redis: the services exist only to build the commands.
    placeholder = settings.model_copy(update={"openrouter_api_key": SecretStr("unused")})
    redis = aioredis.Redis()  # never connected
    services = build_bot_services(placeholder, session, redis)
    async with AssistantBot(Dependencies(placeholder, redis, session, services)) as bot:
        for name in EXTENSIONS:
            await bot.load_extension(name)
        return bot.command_payload(guild_id)


CHECKS: tuple[Callable[[Context], Awaitable[Verdict]], ...] = (
    check_redis,
    check_openrouter_key,
    check_models,
    check_discord_token,
    check_intent,
    check_commands,
)


async def sync(settings: Settings, guild_id: int | None, out: TextIO = sys.stdout) -> int:
    """Register this version's slash commands with Discord now (globally or in one server)."""
    guild_id = guild_id or settings.dev_guild_id
    async with aiohttp.ClientSession() as session, _redis_client(settings) as redis:
        context = Context(settings, session, redis)
        verdict = await _bounded(check_discord_token, context)
        if verdict.failed:
            _print(out, verdict)
            return 1
        verdict = await _bounded(_register(guild_id), context)
        _print(out, verdict)
        return 1 if verdict.failed else 0


def _register(guild_id: int | None) -> Callable[[Context], Awaitable[Verdict]]:
    """A step that PUTs the commands to Discord and records their digest for the bot."""

    async def register(context: Context) -> Verdict:
        """Slash commands: registered now."""
        await _read_application(context)
        scope, payload, digest = await command_payload(context.settings, context.session, guild_id)
        assert context.application_id is not None
        url = _commands_url(context.settings, context.application_id, guild_id)
        headers = _discord_headers(context.settings)
        try:
            async with context.session.put(url, json=payload, headers=headers) as resp:
                status = resp.status
        except aiohttp.ClientError as exc:
            return failed(f"Could not reach Discord: {type(exc).__name__}.")
        if status != 200:
            return failed(f"Discord refused the slash commands ({scope}) with {status}.")
        note = ""
        try:
            assert context.redis is not None
            await context.redis.set(commands_hash(scope), digest)
        except (aioredis.RedisError, OSError):
            note = " (Redis did not answer, so the bot may sync them once more at start)"
        return passed(f"Registered {len(payload)} slash commands ({scope}){note}.")

    return register
