"""Which messages show a conversation's latest answer, so Regenerate can tell the latest one."""

from __future__ import annotations

import json
import logging

from bot.core.keys import ConversationKey
from bot.core.redis_client import RedisClient

log = logging.getLogger(__name__)

LAST_ANSWER_TTL = 7 * 24 * 3600


class LastAnswers:
    """The latest answer's message ids per conversation, kept in Redis under `key.last_answer`."""

    def __init__(self, redis: RedisClient, *, ttl_seconds: int = LAST_ANSWER_TTL) -> None:
        self._redis = redis
        self._ttl_seconds = ttl_seconds

    async def remember(self, key: ConversationKey, message_ids: list[str]) -> None:
        """Record which messages show the conversation's latest answer."""
        await self._redis.set(key.last_answer, json.dumps(message_ids), ex=self._ttl_seconds)

    async def get(self, key: ConversationKey) -> list[str] | None:
        """The message ids of the conversation's latest answer, if known."""
        raw = await self._redis.get(key.last_answer)
        if raw is None:
            return None
        ids = json.loads(raw)
        return [str(i) for i in ids] if isinstance(ids, list) else None

    async def clear(self, key: ConversationKey) -> None:
        """Forget the latest answer (after /reset there is none to regenerate)."""
        await self._redis.delete(key.last_answer)
