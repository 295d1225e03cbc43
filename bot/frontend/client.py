"""The Discord client: a commands.Bot that receives its dependencies and loads one extension per
front-end (shared assistant, slash commands, buttons)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import discord
from discord.ext import commands
from redis.exceptions import RedisError

from bot.config import Settings
from bot.core.keys import COMMANDS_SYNC_LOCK, commands_hash
from bot.core.redis_client import RedisClient
from bot.frontend.answers import AnswerButtons
from bot.frontend.buttons import ButtonActions
from bot.frontend.gate import Gate
from bot.frontend.images import DiscordImageSource, TurnImages
from bot.frontend.recovery import OrphanedReplies
from bot.wiring import BotServices

log = logging.getLogger(__name__)

EXTENSIONS = (
    "bot.frontend.mentions",
    "bot.frontend.commands",
    "bot.frontend.buttons",
    "bot.frontend.privacy",
)

# Exactly what the bot needs: read and send messages and threads, edit its own, read history.
INVITE_PERMISSIONS = discord.Permissions(
    view_channel=True,
    send_messages=True,
    send_messages_in_threads=True,
    create_public_threads=True,
    read_message_history=True,
    embed_links=True,
    add_reactions=True,
    attach_files=False,
)


@dataclass(frozen=True, slots=True)
class Dependencies:
    """Everything the bot is built from; opened and closed by main()."""

    settings: Settings
    redis: RedisClient
    session: aiohttp.ClientSession
    services: BotServices
    http_trace: aiohttp.TraceConfig = field(default_factory=aiohttp.TraceConfig)
    """Sees every HTTP request discord.py makes (metrics)."""


def make_intents(*, allow_dms: bool = False) -> discord.Intents:
    """Guilds and guild messages, with message content (privileged), and direct messages only
    when the bot answers them (ALLOW_DMS); nothing else."""
    intents = discord.Intents.none()
    intents.guilds = True
    intents.guild_messages = True
    intents.message_content = True
    intents.dm_messages = allow_dms
    return intents


class AssistantBot(commands.AutoShardedBot):
    """The assistant: any number of servers, on the shards SHARD_COUNT and SHARD_IDS give this
    process (shard 0 of 1 when they are not set)."""

    def __init__(self, deps: Dependencies) -> None:
        shard_count, shard_ids = deps.settings.shards
        super().__init__(
            shard_count=shard_count,
            shard_ids=list(shard_ids),
            command_prefix=commands.when_mentioned,
            help_command=None,
            intents=make_intents(allow_dms=deps.settings.allow_dms),
            allowed_mentions=discord.AllowedMentions(
                everyone=False,
                roles=False,
                users=False,
                replied_user=deps.settings.reply_mentions_author,
            ),
            max_ratelimit_timeout=30.0,
            max_messages=None,  # nothing reads the message cache: replies carry their target
            http_trace=deps.http_trace,
        )
        services = deps.services
        self.deps = deps
        self.settings = deps.settings
        self.core = services.core
        self.prefs = services.prefs
        self.catalog = services.catalog
        self.pacer = services.pacer
        self.last_answers = services.last_answers
        self.turns = services.turns
        self.memory = services.memory
        self.limits = services.limits
        self.access = services.access
        self.data = services.data
        self.gate = Gate(services.limits)
        history_images = DiscordImageSource(
            self.get_partial_messageable, max_bytes=deps.settings.max_image_bytes
        )
        # What images each turn may send: the question's own, and those of history again.
        self.turn_images = TurnImages(services.prefs, services.catalog, history_images)
        self.answer_buttons = AnswerButtons(
            services.turns,
            services.last_answers,
            services.pacer,
            self.get_channel,
            self.gate,
            images=self.turn_images,
        )
        # What Stop and Regenerate presses call (see buttons.ButtonHost).
        self.button_actions: ButtonActions = self.answer_buttons
        self.orphans = OrphanedReplies(
            services.inflight,
            services.core.store,
            services.last_answers,
            services.pacer,
            self.get_partial_messageable,
        )
        self._chores: list[asyncio.Task[None]] = []
        self._ready_once = False
        # Said in the "Logged in" line, so a start-up that fails later prints only its error.
        self.sync_outcome = "slash commands not synced"

    async def setup_hook(self) -> None:
        """Load the front-ends, sync slash commands when their definitions changed, and start
        this process's heartbeat (before any answer, so no live answer looks orphaned)."""
        for name in EXTENSIONS:
            await self.load_extension(name)
        await self.sync_commands()
        inflight = self.deps.services.inflight
        try:
            await inflight.beat()
        except RedisError as exc:
            log.warning("Could not start this process's heartbeat: %s", exc)
        self._chores.append(asyncio.create_task(inflight.keep_beating(), name="heartbeat"))

    def command_payload(self, guild_id: int | None) -> tuple[str, list[dict[str, Any]], str]:
        """The scope ("global" or a server id), the commands as Discord gets them, their digest."""
        guild = discord.Object(guild_id) if guild_id else None
        if guild is not None:
            self.tree.copy_global_to(guild=guild)
        scope = str(guild.id) if guild else "global"
        payload = [cmd.to_dict(self.tree) for cmd in self.tree.get_commands(guild=guild)]
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        return scope, payload, digest

    async def sync_commands(self) -> None:
        """Sync to DEV_GUILD_ID or globally, only when changed, from one process at a time.

        The outcome is logged with the "Logged in" line, not here: when the gateway then refuses
        the bot (a missing intent, a bad token), the one error line is all a server owner sees.
        """
        guild = discord.Object(self.settings.dev_guild_id) if self.settings.dev_guild_id else None
        scope, _payload, digest = self.command_payload(self.settings.dev_guild_id)
        redis = self.deps.redis
        key = commands_hash(scope)
        if await redis.get(key) == digest.encode():
            self.sync_outcome = f"slash commands unchanged ({scope})"
            log.debug("Slash commands unchanged; not syncing.")
            return
        if not await redis.set(COMMANDS_SYNC_LOCK, "1", nx=True, ex=60):
            self.sync_outcome = "slash commands synced by another process"
            log.debug("Another process is syncing slash commands.")
            return
        try:
            synced = await self.tree.sync(guild=guild)
            await redis.set(key, digest)
            self.sync_outcome = f"synced {len(synced)} slash commands ({scope})"
            log.debug("Synced %d slash commands (%s).", len(synced), scope)
        finally:
            await redis.delete(COMMANDS_SYNC_LOCK)

    async def on_ready(self) -> None:
        """Log who we are and the invite URL, once per process."""
        if self._ready_once or self.user is None:
            return
        self._ready_once = True
        # Replies a stopped process left streaming are finished once the gateway is up.
        self._chores.append(asyncio.create_task(self.orphans.run(), name="orphaned replies"))
        url = discord.utils.oauth_url(
            self.user.id,
            permissions=INVITE_PERMISSIONS,
            scopes=("bot", "applications.commands"),
        )
        log.info(
            "Logged in as %s (%s) in %d servers; %s.",
            self.user,
            self.user.id,
            len(self.guilds),
            self.sync_outcome,
        )
        log.info("Invite URL: %s", url)

    async def on_message(self, message: discord.Message, /) -> None:
        """No prefix commands: messages are the shared assistant's (its cog listens to them)."""

    async def close(self) -> None:
        """Stop answers in flight (keeping their text), then disconnect."""
        await self.turns.shutdown()
        for chore in self._chores:
            chore.cancel()
        await asyncio.gather(*self._chores, return_exceptions=True)
        with contextlib.suppress(RedisError):
            await self.deps.services.inflight.stop_beating()
        await super().close()
