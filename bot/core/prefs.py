"""Per-channel and per-server choices (model, system prompt, reasoning, web search, fallback
models, usage footer) and facts about a conversation.

A channel's choice overrides the server's, which overrides the default from the settings. Each
choice is a named entry of `CHOICES`: a parser that turns what a person typed into the stored
form (or says in one sentence what is accepted) and whether only a server may set it. Values are
stored as strings; `answer_options` and `footer_options` read them as the typed options a turn
and its reply need.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from bot.core.keys import ConversationKey, ServerKey, server_prefs
from bot.core.options import (
    MODEL_DEFAULT_EFFORT,
    NO_FALLBACKS,
    AnswerOptions,
    OptionError,
    effort_or_none,
    model_list,
    parse_effort,
    parse_model_list,
    parse_switch,
    switch_value,
)
from bot.core.redis_client import RedisClient

Scope = Literal["channel", "server"]
Source = Literal["channel", "server", "default"]
PrefName = Literal["model", "system", "reasoning", "web", "fallbacks", "footer"]
PREF_NAMES: tuple[PrefName, ...] = ("model", "system", "reasoning", "web", "fallbacks", "footer")
MAX_MODEL_CHARS = 200
MAX_SYSTEM_CHARS = 4000


@dataclass(frozen=True, slots=True)
class Effective:
    """The value in force for one choice, and where it comes from."""

    value: str
    source: Source


def _parse_model(raw: str) -> str:
    """A model id: one word (the catalog check is the caller's, it needs the network)."""
    value = raw.strip()
    if not value or len(value) > MAX_MODEL_CHARS or any(ch.isspace() for ch in value):
        raise OptionError("A model id is one word like openai/gpt-4o-mini.")
    return value


def _parse_system(raw: str) -> str:
    """A system prompt of at most MAX_SYSTEM_CHARS characters."""
    value = raw.strip()
    if len(value) > MAX_SYSTEM_CHARS:
        raise OptionError(f"The system prompt can be at most {MAX_SYSTEM_CHARS} characters.")
    return value


@dataclass(frozen=True, slots=True)
class Choice:
    """One named choice: how it is called to people, its parser, and whether it is per server."""

    name: PrefName
    label: str
    parse: Callable[[str], str]
    server_only: bool = False


CHOICES: dict[PrefName, Choice] = {
    "model": Choice("model", "model", _parse_model),
    "system": Choice("system", "system prompt", _parse_system),
    "reasoning": Choice("reasoning", "reasoning effort", parse_effort),
    "web": Choice("web", "web search", lambda raw: parse_switch(raw, "Web search")),
    "fallbacks": Choice("fallbacks", "fallback models", parse_model_list),
    "footer": Choice(
        "footer", "usage footer", lambda raw: parse_switch(raw, "The usage footer"), True
    ),
}


def parse_choice(name: PrefName, raw: str, scope: Scope = "channel") -> str:
    """The stored form of a typed value for a choice at a scope, or OptionError (one sentence)."""
    choice = CHOICES[name]
    if choice.server_only and scope != "server":
        raise OptionError(f"The {choice.label} can only be set for the whole server.")
    return choice.parse(raw)


_PIN_LUA = """
redis.call('ZADD', KEYS[1], 'inf', ARGV[1])
redis.call('PERSIST', KEYS[1])
return 1
"""
"""KEYS: a server's index of conversations. ARGV: a channel, listed for good (+inf)."""


async def _note_channel_settings(redis: RedisClient, key: ConversationKey) -> None:
    """List the channel in its server's index for good (+inf: its settings never expire), so
    deleting the server's data finds them."""
    index = ServerKey(key.guild).conversations
    # One script rather than MULTI: redis-py's cluster client has transactions only since 6.2.
    await redis.eval(_PIN_LUA, 1, index, key.channel)  # type: ignore[misc]


class Preferences:
    """Reads and writes the choices of `CHOICES` with channel > server > default.

    The defaults are typed values in their stored form (see the parsers); those left out mean
    the model's own reasoning, no web search, no fallbacks and no usage footer.
    """

    def __init__(
        self,
        redis: RedisClient,
        *,
        default_model: str,
        default_system: str,
        default_reasoning: str = MODEL_DEFAULT_EFFORT,
        default_web: str = "off",
        default_fallbacks: str = NO_FALLBACKS,
        default_footer: str = "off",
    ) -> None:
        self.redis = redis
        self.defaults: dict[PrefName, str] = {
            "model": default_model,
            "system": default_system,
            "reasoning": parse_effort(default_reasoning),
            "web": parse_switch(default_web),
            "fallbacks": parse_model_list(default_fallbacks),
            "footer": parse_switch(default_footer),
        }

    def _hash(self, key: ConversationKey, scope: Scope) -> str:
        return key.prefs if scope == "channel" else server_prefs(key.guild)

    async def set(self, key: ConversationKey, scope: Scope, name: PrefName, value: str) -> str:
        """Set a choice at a scope and return its stored form; an empty value clears it so the
        next level shows through. A value the choice does not take raises OptionError."""
        target = self._hash(key, scope)
        if value.strip() and scope == "channel":
            await _note_channel_settings(self.redis, key)
        if not value.strip():
            await self.redis.hdel(target, name)  # type: ignore[misc]
            return ""
        stored = parse_choice(name, value, scope)
        await self.redis.hset(target, name, stored)  # type: ignore[misc]
        return stored

    async def effective(self, key: ConversationKey) -> dict[PrefName, Effective]:
        """Every choice in force for a conversation, with its source."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self._hash(key, "channel"))
            pipe.hgetall(self._hash(key, "server"))
            channel_raw, server_raw = await pipe.execute()
        channel, server = _decode(channel_raw), _decode(server_raw)
        result: dict[PrefName, Effective] = {}
        for name in PREF_NAMES:
            if name in channel and not CHOICES[name].server_only:
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


def answer_options(
    choices: Mapping[PrefName, Effective], *, web_max_results: int, web: bool | None = None
) -> AnswerOptions:
    """The request options of the choices in force; `web` (a command's own option) overrides
    the web choice when given."""
    return AnswerOptions(
        reasoning_effort=effort_or_none(choices["reasoning"].value),
        web=switch_value(choices["web"].value) if web is None else web,
        web_max_results=web_max_results,
        fallback_models=model_list(choices["fallbacks"].value),
    )


def usage_footer(choices: Mapping[PrefName, Effective]) -> bool:
    """Whether answers here end with the usage footer."""
    return switch_value(choices["footer"].value)


def _decode(raw: dict[bytes | str, bytes | str]) -> dict[str, str]:
    """A Redis hash as str to str, whatever decode_responses the client uses."""
    return {_text(k): _text(v) for k, v in raw.items()}
