"""OpenRouter's model list, cached in Redis and in memory, for /model autocomplete and validation.

Autocomplete must answer within Discord's ~3 s, so the list is fetched with a short timeout, one
fetch at a time (callers on a cold cache share it), and a failure is remembered for a minute so
each keystroke does not ask again; meanwhile the catalog answers from what it already knows.
"""

from __future__ import annotations

import asyncio
import difflib
import json
import logging
import time
from collections.abc import Callable

import aiohttp
import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

CACHE_KEY = "bot:models"
CACHE_SECONDS = 3600
FETCH_TIMEOUT_SECONDS = 2.5
MEMORY_SECONDS = 300.0
FAILURE_SECONDS = 60.0


def parse_cached(raw: bytes | str | None) -> list[str] | None:
    """The names in a cached value, or None when it is missing or not a JSON list of strings."""
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        return None
    return value


class ModelCatalog:
    """The names of the models OpenRouter offers (GET {base}/models), cached for an hour."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        redis: aioredis.Redis,
        *,
        base_url: str,
        timeout: float = FETCH_TIMEOUT_SECONDS,
        memory_seconds: float = MEMORY_SECONDS,
        failure_seconds: float = FAILURE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.session = session
        self.redis = redis
        self.url = f"{base_url.rstrip('/')}/models"
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.memory_seconds = memory_seconds
        self.failure_seconds = failure_seconds
        self._clock = clock
        self._known: list[str] = []
        self._known_until = float("-inf")
        self._loading: asyncio.Task[list[str]] | None = None

    async def names(self) -> list[str]:
        """Every model id, from memory, Redis or one shared fetch; what is known if unreachable."""
        if self._clock() < self._known_until:
            return list(self._known)
        if self._loading is None:
            self._loading = asyncio.create_task(self._load())
            self._loading.add_done_callback(self._loading_done)
        # Shielded: a caller that gives up (an expired autocomplete) does not cancel the others.
        return list(await asyncio.shield(self._loading))

    def _loading_done(self, task: asyncio.Task[list[str]]) -> None:
        """Let the next caller after this load start a new one."""
        if self._loading is task:
            self._loading = None

    async def _load(self) -> list[str]:
        """Redis's copy, else a fresh fetch; a failed fetch keeps the old names for a while."""
        cached = await self._read_cache()
        if cached is not None:
            return self._remember(cached, self.memory_seconds)
        try:
            names = await self._fetch()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning(
                "Could not fetch the model list from %s: %s: %s", self.url, type(exc).__name__, exc
            )
            return self._remember(self._known, self.failure_seconds)
        await self._write_cache(names)
        return self._remember(names, self.memory_seconds)

    def _remember(self, names: list[str], seconds: float) -> list[str]:
        """Keep `names` in memory and answer from them for `seconds`."""
        self._known = names
        self._known_until = self._clock() + seconds
        return names

    async def _read_cache(self) -> list[str] | None:
        """The names cached in Redis; None when absent, corrupt or Redis is unreachable."""
        try:
            raw = await self.redis.get(CACHE_KEY)
        except RedisError as exc:
            log.warning("Could not read the cached model list: %s", exc)
            return None
        return parse_cached(raw)

    async def _write_cache(self, names: list[str]) -> None:
        """Cache the names in Redis for an hour; a failure only costs a later refetch."""
        try:
            await self.redis.set(CACHE_KEY, json.dumps(names), ex=CACHE_SECONDS)
        except RedisError as exc:
            log.warning("Could not cache the model list: %s", exc)

    async def _fetch(self) -> list[str]:
        """Download the list under the short timeout; the models endpoint needs no key."""
        async with self.session.get(self.url, timeout=self.timeout) as resp:
            resp.raise_for_status()
            body = await resp.json(content_type=None)
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise ValueError("the model list has no data array")
        return sorted({str(m["id"]) for m in data if isinstance(m, dict) and "id" in m})

    async def matching(self, text: str, limit: int = 25) -> list[str]:
        """Model ids containing the typed text, for autocomplete."""
        needle = text.strip().lower()
        names = await self.names()
        hits = [n for n in names if needle in n.lower()] if needle else names
        return hits[:limit]

    async def check(self, name: str) -> tuple[bool, list[str]]:
        """Whether `name` is offered (True when the list is unknown), and the closest names."""
        names = await self.names()
        if not names or name in names:
            return True, []
        return False, difflib.get_close_matches(name, names, n=3, cutoff=0.4)
