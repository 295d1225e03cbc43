"""OpenRouter's model list, cached in Redis and in memory, for /model autocomplete and validation.

Autocomplete must answer within Discord's ~3 s, so the list is fetched with a short timeout, one
fetch at a time (callers on a cold cache share it), and a failure is remembered for a minute so
each keystroke does not ask again; meanwhile the catalog answers from what it already knows.

Besides the names, the catalog keeps each model's `architecture.input_modalities`, so a
question with images can be refused at once for a model that reads only text, and its
`context_length`, so the history sent fits the model (bot.core.context). The Redis copy is
`{"models": {id: [modality, ...] or null}, "context": {id: tokens}}`; a copy without
"context", or a plain list of names (the older forms), still reads, with what it lacks unknown.
"""

from __future__ import annotations

import asyncio
import difflib
import json
import logging
import time
from collections.abc import Callable

import aiohttp
from redis.exceptions import RedisError

from bot.core.redis_client import RedisClient

log = logging.getLogger(__name__)

CACHE_KEY = "bot:models"
CACHE_SECONDS = 3600
FETCH_TIMEOUT_SECONDS = 2.5
MEMORY_SECONDS = 300.0
FAILURE_SECONDS = 60.0


Modalities = tuple[str, ...] | None
"""A model's input modalities (e.g. ("text", "image")), or None when the list does not say."""


def parse_cached(raw: bytes | str | None) -> dict[str, Modalities] | None:
    """The models in a cached value with their input modalities; None when it is missing or
    malformed. A JSON list of names (the older form) gives names with unknown modalities."""
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    if isinstance(value, list) and all(isinstance(name, str) for name in value):
        return dict.fromkeys(value)
    models = value.get("models") if isinstance(value, dict) else None
    if not isinstance(models, dict):
        return None
    parsed: dict[str, Modalities] = {}
    for name, modalities in models.items():
        if modalities is None:
            parsed[name] = None
        elif isinstance(modalities, list) and all(isinstance(m, str) for m in modalities):
            parsed[name] = tuple(modalities)
        else:
            return None
    return parsed


def parse_cached_contexts(raw: bytes | str | None) -> dict[str, int]:
    """The context lengths in a cached value; empty when it has none or is malformed."""
    try:
        value = json.loads(raw) if raw is not None else None
    except ValueError:
        return {}
    contexts = value.get("context") if isinstance(value, dict) else None
    if not isinstance(contexts, dict):
        return {}
    return {name: n for name, n in contexts.items() if isinstance(n, int) and n > 0}


def _entry_context(entry: dict[str, object]) -> int | None:
    """The `context_length` of one /models entry, or None when absent or not a count."""
    length = entry.get("context_length")
    if isinstance(length, bool) or not isinstance(length, int | float) or length <= 0:
        return None
    return int(length)


def _entry_modalities(entry: dict[str, object]) -> Modalities:
    """The `architecture.input_modalities` of one /models entry, or None when absent."""
    architecture = entry.get("architecture")
    if not isinstance(architecture, dict):
        return None
    modalities = architecture.get("input_modalities")
    if not isinstance(modalities, list):
        return None
    return tuple(str(m) for m in modalities)


class ModelCatalog:
    """The names of the models OpenRouter offers (GET {base}/models), cached for an hour."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        redis: RedisClient,
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
        self._known: dict[str, Modalities] = {}
        self._contexts: dict[str, int] = {}
        self._known_until = float("-inf")
        self._loading: asyncio.Task[dict[str, Modalities]] | None = None

    async def names(self) -> list[str]:
        """Every model id, from memory, Redis or one shared fetch; what is known if unreachable."""
        return sorted(await self._models())

    async def takes_images(self, model: str) -> bool | None:
        """Whether `model` reads images; None when unknown (list unreachable, model or its
        modalities not listed). A routing suffix such as `:online` is looked up by its base."""
        models = await self._models()
        if model not in models:
            model = model.split(":", 1)[0]
        modalities = models.get(model)
        return None if modalities is None else "image" in modalities

    async def context_length(self, model: str) -> int | None:
        """The model's context length in tokens; None when unknown. A routing suffix such as
        `:online` is looked up by its base, as for images."""
        models = await self._models()
        if model not in models:
            model = model.split(":", 1)[0]
        return self._contexts.get(model)

    async def image_models(self) -> list[str]:
        """The ids of every listed model known to read images, sorted."""
        return sorted(m for m, mods in (await self._models()).items() if mods and "image" in mods)

    async def _models(self) -> dict[str, Modalities]:
        """Every model with its input modalities, from memory, Redis or one shared fetch."""
        if self._clock() < self._known_until:
            return self._known
        if self._loading is None:
            self._loading = asyncio.create_task(self._load())
            self._loading.add_done_callback(self._loading_done)
        # Shielded: a caller that gives up (an expired autocomplete) does not cancel the others.
        return await asyncio.shield(self._loading)

    def _loading_done(self, task: asyncio.Task[dict[str, Modalities]]) -> None:
        """Let the next caller after this load start a new one."""
        if self._loading is task:
            self._loading = None

    async def _load(self) -> dict[str, Modalities]:
        """Redis's copy, else a fresh fetch; a failed fetch keeps the old names for a while."""
        raw = await self._read_cache()
        cached = parse_cached(raw)
        if cached is not None:
            self._contexts = parse_cached_contexts(raw)
            return self._remember(cached, self.memory_seconds)
        try:
            models, contexts = await self._fetch()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning(
                "Could not fetch the model list from %s: %s: %s", self.url, type(exc).__name__, exc
            )
            return self._remember(self._known, self.failure_seconds)
        await self._write_cache(models, contexts)
        self._contexts = contexts
        return self._remember(models, self.memory_seconds)

    def _remember(self, models: dict[str, Modalities], seconds: float) -> dict[str, Modalities]:
        """Keep `models` in memory and answer from them for `seconds`."""
        self._known = models
        self._known_until = self._clock() + seconds
        return models

    async def _read_cache(self) -> bytes | str | None:
        """The list cached in Redis, as stored; None when absent or Redis is unreachable."""
        try:
            raw: bytes | str | None = await self.redis.get(CACHE_KEY)
        except RedisError as exc:
            log.warning("Could not read the cached model list: %s", exc)
            return None
        return raw

    async def _write_cache(self, models: dict[str, Modalities], contexts: dict[str, int]) -> None:
        """Cache the models in Redis for an hour; a failure only costs a later refetch."""
        value = json.dumps(
            {
                "models": {name: models[name] for name in sorted(models)},
                "context": {name: contexts[name] for name in sorted(contexts)},
            }
        )
        try:
            await self.redis.set(CACHE_KEY, value, ex=CACHE_SECONDS)
        except RedisError as exc:
            log.warning("Could not cache the model list: %s", exc)

    async def _fetch(self) -> tuple[dict[str, Modalities], dict[str, int]]:
        """Download the list under the short timeout (the models endpoint needs no key): the
        models with their modalities, and the context lengths the list gives."""
        async with self.session.get(self.url, timeout=self.timeout) as resp:
            resp.raise_for_status()
            body = await resp.json(content_type=None)
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise ValueError("the model list has no data array")
        entries = [m for m in data if isinstance(m, dict) and "id" in m]
        contexts = {str(m["id"]): _entry_context(m) for m in entries}
        models = {str(m["id"]): _entry_modalities(m) for m in entries}
        return models, {name: n for name, n in contexts.items() if n is not None}

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
