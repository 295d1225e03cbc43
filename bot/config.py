"""Settings read from the environment and a .env file, built once in main() and passed down."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.core.options import (
    MAX_WEB_RESULTS,
    NO_FALLBACKS,
    effort_or_none,
    model_list,
    parse_effort,
    parse_model_list,
)

DEFAULT_OPENROUTER_BASE_URL = "https://openrouter.ai/api/v1"
DEFAULT_DISCORD_API_BASE = "https://discord.com/api/v10"
DEFAULT_DISCORD_GATEWAY_URL = "wss://gateway.discord.gg/"


class ConfigError(Exception):
    """A setting is missing or malformed; the message is one line naming the variable."""


class Settings(BaseSettings):
    """Every setting of the bot; the names are the environment variables, upper-cased."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        hide_input_in_errors=True,
        # `NAME=` (as .env.example ships its optional lines) means "not set": the default holds.
        env_ignore_empty=True,
    )

    discord_token: SecretStr | None = None
    discord_api_base: str = DEFAULT_DISCORD_API_BASE
    discord_gateway_url: str = DEFAULT_DISCORD_GATEWAY_URL
    dev_guild_id: int | None = None

    openrouter_api_key: SecretStr | None = None
    openrouter_base_url: str = DEFAULT_OPENROUTER_BASE_URL

    redis_url: SecretStr = SecretStr("redis://localhost:6379/0")
    redis_cluster: bool = False

    default_model: str = "openai/gpt-4o-mini"
    system_prompt: str = (
        "You are a helpful assistant in a Discord server. Answer concisely and use Discord "
        "markdown."
    )
    # Reasoning models spend output tokens on thinking before the first word of the answer:
    # 1,024 was often gone before the answer began.
    max_output_tokens: int = Field(default=4096, ge=16, le=200_000)
    max_input_chars: int = Field(default=8000, ge=1, le=1_000_000)
    history_max_messages: int = Field(default=40, ge=2, le=10_000)
    history_max_chars: int = Field(default=40_000, ge=1000, le=10_000_000)
    history_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=60)
    edit_interval_seconds: float = Field(default=1.05, ge=0.2, le=60)
    queue_depth: int = Field(default=5, ge=0, le=100)
    reply_mentions_author: bool = True
    user_rate_per_minute: int = Field(default=6, ge=0, le=10_000)
    limit_admins: bool = False
    server_daily_tokens: int = Field(default=0, ge=0)
    server_daily_cost_usd: float = Field(default=0, ge=0, allow_inf_nan=False)
    allow_dms: bool = False
    max_image_bytes: int = Field(default=8 * 1024 * 1024, ge=1024, le=100 * 1024 * 1024)
    image_history: int = Field(default=3, ge=0, le=20)
    reasoning_effort: str = ""
    web_search: bool = False
    web_max_results: int = Field(default=5, ge=1, le=MAX_WEB_RESULTS)
    fallback_models: str = ""
    usage_footer: bool = False

    @field_validator("reasoning_effort")
    @classmethod
    def _effort(cls, value: str) -> str:
        """Empty (the model's own default), auto, or one of the efforts."""
        return parse_effort(value) if value.strip() else ""

    @field_validator("fallback_models")
    @classmethod
    def _fallbacks(cls, value: str) -> str:
        """Comma-separated model ids, at most two; stored in canonical form ("" for none)."""
        stored = parse_model_list(value)
        return "" if stored == NO_FALLBACKS else stored

    @property
    def reasoning(self) -> str | None:
        """The configured reasoning effort, or None for the model's own default."""
        return effort_or_none(self.reasoning_effort)

    @property
    def fallbacks(self) -> tuple[str, ...]:
        """The configured fallback models, in order."""
        return model_list(self.fallback_models)

    http_port: int = Field(default=8080, ge=0, le=65535)
    http_host: str = "127.0.0.1"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    log_content: bool = False
    max_tool_rounds: int = Field(default=4, ge=1, le=20)
    memory_enabled: bool = False
    memory_max_facts: int = Field(default=500, ge=1, le=100_000)

    # Several processes (see deploy/README.md): Discord's shards, and the bot's share of its
    # global 50 requests/s, which all processes of the bot take from together through Redis.
    shard_count: int | None = Field(default=None, ge=1, le=10_000)
    shard_ids: str = ""
    discord_requests_per_second: int = Field(default=40, ge=1, le=50)

    @field_validator("shard_ids")
    @classmethod
    def _shard_ids(cls, value: str, info: ValidationInfo) -> str:
        """Comma-separated shard numbers, below SHARD_COUNT (which must be set), each once."""
        if not value.strip():
            return ""
        count = info.data.get("shard_count")
        if count is None:
            raise ValueError("needs SHARD_COUNT too")
        try:
            ids = [int(part) for part in value.split(",")]
        except ValueError:
            raise ValueError("must be shard numbers separated by commas, e.g. 0,1") from None
        if any(not 0 <= shard < count for shard in ids):
            raise ValueError(f"each shard must be from 0 to {count - 1} (SHARD_COUNT - 1)")
        if len(set(ids)) != len(ids):
            raise ValueError("names a shard twice")
        return ",".join(str(shard) for shard in sorted(ids))

    @property
    def shards(self) -> tuple[int, tuple[int, ...]]:
        """(shard count, the shards this process runs): empty settings mean (1, (0,))."""
        count = self.shard_count or 1
        if not self.shard_ids:
            return count, tuple(range(count))
        return count, tuple(int(part) for part in self.shard_ids.split(","))

    @field_validator("openrouter_base_url", "discord_api_base", "discord_gateway_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        """Base URLs are joined with paths, so a trailing slash would double up."""
        if not value.startswith(("http://", "https://", "ws://", "wss://")):
            raise ValueError("must be an http(s):// or ws(s):// URL")
        return value.rstrip("/")

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _fold_case(cls, value: Any, info: ValidationInfo) -> Any:
        """LOG_LEVEL=debug and LOG_FORMAT=JSON mean the same as their usual spelling."""
        if not isinstance(value, str):
            return value
        value = value.strip()
        return value.upper() if info.field_name == "log_level" else value.lower()

    @field_validator("discord_token", "openrouter_api_key", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        """An empty KEY= line in .env means the same as no line at all."""
        if isinstance(value, str) and not value.strip():
            return None
        return value


def load_settings(env_file: str | Path | None = ".env", **overrides: Any) -> Settings:
    """Build the settings, turning any validation error into one ConfigError line."""
    try:
        return Settings(_env_file=env_file, **overrides)  # type: ignore[call-arg]
    except ValidationError as exc:
        raise ConfigError(_first_error_line(exc)) from None


def _first_error_line(exc: ValidationError) -> str:
    """One sentence naming the variable of the first error, never echoing its value."""
    err = exc.errors(include_input=False, include_url=False)[0]
    name = str(err["loc"][0]).upper() if err["loc"] else "a setting"
    msg = str(err["msg"]).replace("Value error, ", "").rstrip(".")
    return f"Setting {name} is invalid: {msg}."


def require(value: SecretStr | None, name: str) -> SecretStr:
    """Return a secret that a command needs, or stop with one line saying how to set it."""
    if value is None or not value.get_secret_value().strip():
        raise ConfigError(f"{name} is not set: add it to .env or the environment.")
    return value
