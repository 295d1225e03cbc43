"""Per-channel and per-server choices (model, system prompt) and facts about a conversation.

A channel's choice overrides the server's, which overrides the defaults from the settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import redis.asyncio as aioredis

from bot.core.keys import ConversationKey, server_prefs

Scope = Literal["channel", "server"]
Source = Literal["channel", "server", "default"]
PrefName = Literal["model", "system"]
PREF_NAMES: tuple[PrefName, ...] = ("model", "system")


@dataclass(frozen=True, slots=True)
class Effective:
    """The value in force for one choice, and where it comes from."""

    value: str
    source: Source


class Preferences:
    """Reads and writes model and system prompt choices with channel > server > default."""

    def __init__(self, redis: aioredis.Redis, *, default_model: str, default_system: str) -> None:
        self.redis = redis
        self.defaults: dict[PrefName, str] = {"model": default_model, "system": default_system}

    def _hash(self, key: ConversationKey, scope: Scope) -> str:
        return key.prefs if scope == "channel" else server_prefs(key.guild)

    async def set(self, key: ConversationKey, scope: Scope, name: PrefName, value: str) -> None:
        """Set a choice at a scope; an empty value clears it so the next level shows through."""
        target = self._hash(key, scope)
        if value:
            await self.redis.hset(target, name, value)  # type: ignore[misc]
        else:
            await self.redis.hdel(target, name)  # type: ignore[misc]

    async def effective(self, key: ConversationKey) -> dict[PrefName, Effective]:
        """Every choice in force for a conversation, with its source."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self._hash(key, "channel"))
            pipe.hgetall(self._hash(key, "server"))
            channel_raw, server_raw = await pipe.execute()
        channel, server = _decode(channel_raw), _decode(server_raw)
        result: dict[PrefName, Effective] = {}
        for name in PREF_NAMES:
            if name in channel:
                result[name] = Effective(channel[name], "channel")
            elif name in server:
                result[name] = Effective(server[name], "server")
            else:
                result[name] = Effective(self.defaults[name], "default")
        return result

    async def set_owner(self, key: ConversationKey, user_id: str) -> None:
        """Record who started a thread conversation (they may /reset and /stop it)."""
        await self.redis.hset(key.meta, "owner", user_id)  # type: ignore[misc]

    async def owner(self, key: ConversationKey) -> str | None:
        """Who started this thread conversation, if the bot started it."""
        raw = await self.redis.hget(key.meta, "owner")  # type: ignore[misc]
        return _text(raw) if raw is not None else None


def _text(value: bytes | str) -> str:
    """A stored string; bytes that are not UTF-8 are replaced, never raised on."""
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _decode(raw: dict[bytes | str, bytes | str]) -> dict[str, str]:
    """A Redis hash as str to str, whatever decode_responses the client uses."""
    return {_text(k): _text(v) for k, v in raw.items()}
