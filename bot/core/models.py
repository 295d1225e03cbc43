"""OpenRouter's model list, cached in Redis, for /model autocomplete and validation."""

from __future__ import annotations

import difflib
import json
import logging

import aiohttp
import redis.asyncio as aioredis

log = logging.getLogger(__name__)

CACHE_KEY = "bot:models"
CACHE_SECONDS = 3600


class ModelCatalog:
    """The names of the models OpenRouter offers (GET {base}/models), cached for an hour."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        redis: aioredis.Redis,
        *,
        base_url: str,
        timeout: float = 10.0,
    ) -> None:
        self.session = session
        self.redis = redis
        self.url = f"{base_url.rstrip('/')}/models"
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    async def names(self) -> list[str]:
        """Every model id, from the cache or freshly fetched; empty if the list is unreachable."""
        cached = await self.redis.get(CACHE_KEY)
        if cached is not None:
            return list(json.loads(cached))
        try:
            names = await self._fetch()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("Could not fetch the model list from %s: %s", self.url, exc)
            return []
        await self.redis.set(CACHE_KEY, json.dumps(names), ex=CACHE_SECONDS)
        return names

    async def _fetch(self) -> list[str]:
        """Download the list; the models endpoint needs no key."""
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
