"""The REST half of the emulator: routes under /api/v10, validation, rate limits, the timeline."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, web

from tests.e2e.discord_emulator import errors
from tests.e2e.discord_emulator.interactions import Interactions
from tests.e2e.discord_emulator.messages import MessageStore
from tests.e2e.discord_emulator.model import (
    SEND_MESSAGES,
    SEND_MESSAGES_IN_THREADS,
    VIEW_CHANNEL,
    Message,
)
from tests.e2e.discord_emulator.ratelimit import ChannelMessageLimiter, rate_limit_headers
from tests.e2e.discord_emulator.world import World

log = logging.getLogger(__name__)

API_PREFIX = "/api/v10"
COMMAND_NAME = re.compile(r"^[-_\w]{1,32}$")


@dataclass
class RestCall:
    """One request the bot made: when (emulator clock), what, with which body, and the answer."""

    at: float
    method: str
    route: str
    params: dict[str, str]
    query: dict[str, str]
    body: Any
    status: int
    response: Any
    files: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Call:
    """What a route handler gets: path parameters, query, JSON body, uploads, response headers."""

    request: web.Request
    params: dict[str, str]
    query: dict[str, str]
    body: Any
    files: list[dict[str, Any]]
    headers: dict[str, str] = field(default_factory=dict)

    def int_param(self, name: str) -> int:
        """A snowflake path parameter; a non-number is an unknown object as on Discord."""
        try:
            return int(self.params[name])
        except ValueError:
            raise errors.not_found_route() from None

    @property
    def json(self) -> dict[str, Any]:
        """The body as an object ({} when there was none)."""
        return self.body if isinstance(self.body, dict) else {}


class RateLimitedError(Exception):
    """The per-channel limit refused the request; answered 429 as Discord does."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"429, retry after {retry_after}")
        self.retry_after = retry_after


Answer = tuple[int, Any]
Handler = Callable[[Call], Awaitable[Answer]]


async def read_body(request: web.Request) -> tuple[Any, list[dict[str, Any]]]:
    """The JSON body (also from multipart `payload_json`) and a description of uploaded files."""
    if request.content_type.startswith("multipart/"):
        return await _read_multipart(request)
    text = await request.text()
    return (json.loads(text) if text else None), []


async def _read_multipart(request: web.Request) -> tuple[Any, list[dict[str, Any]]]:
    """Read discord.py's multipart form: payload_json plus files[n] parts."""
    body: Any = None
    files: list[dict[str, Any]] = []
    reader = await request.multipart()
    async for part in reader:
        if not isinstance(part, BodyPartReader):
            continue
        data = await part.read()
        if part.name == "payload_json":
            body = json.loads(data)
        else:
            ctype = part.headers.get("Content-Type")
            files.append({"filename": part.filename, "size": len(data), "content_type": ctype})
    return body, files


class RestApi:
    """Route handlers and the wrapper that authenticates, limits and records every call."""

    def __init__(
        self,
        *,
        world: World,
        store: MessageStore,
        interactions: Interactions,
        limiter: ChannelMessageLimiter,
        token: str,
        gateway_url: Callable[[], str],
        on_change: Callable[[], Awaitable[None]],
        application_flags: Callable[[], int] = lambda: 1 << 19,
    ) -> None:
        self.world = world
        self.application_flags = application_flags
        self.store = store
        self.interactions = interactions
        self.limiter = limiter
        self.token = token
        self.gateway_url = gateway_url
        self.on_change = on_change
        self.timeline: list[RestCall] = []
        self.unknown_routes: list[tuple[str, str]] = []
        self.commands: dict[int | None, list[dict[str, Any]]] = {}
        self.command_syncs: list[tuple[int | None, list[dict[str, Any]]]] = []
        self.typing: list[tuple[float, int]] = []
        self.forbidden_channels: set[int] = set()
        self.recommended_shards = 1
        """What GET /gateway/bot says the bot should run (`shards`)."""

    def register(self, app: web.Application) -> None:
        """Add every route, then the loud catch-all for unknown ones."""
        for method, template, handler, needs_auth in self._routes():
            app.router.add_route(method, API_PREFIX + template, self._wrap(handler, needs_auth))
        app.router.add_route("*", "/{tail:.*}", self._unknown)

    def _routes(self) -> list[tuple[str, str, Handler, bool]]:
        """(method, route template, handler, needs bot token)."""
        commands = "/applications/{application_id}/commands"
        guild_commands = "/applications/{application_id}/guilds/{guild_id}/commands"
        message = "/channels/{channel_id}/messages/{message_id}"
        hook = "/webhooks/{application_id}/{token}"
        return [
            ("GET", "/users/@me", self.get_me, True),
            ("GET", "/users/{user_id}", self.get_user, True),
            ("GET", "/oauth2/applications/@me", self.get_application, True),
            ("GET", "/applications/@me", self.get_application, True),
            ("GET", "/gateway", self.get_gateway, False),
            ("GET", "/gateway/bot", self.get_gateway_bot, True),
            ("GET", commands, self.get_commands, True),
            ("PUT", commands, self.put_commands, True),
            ("GET", guild_commands, self.get_commands, True),
            ("PUT", guild_commands, self.put_commands, True),
            ("GET", "/guilds/{guild_id}/members/{user_id}", self.get_member, True),
            ("GET", "/channels/{channel_id}", self.get_channel, True),
            ("GET", "/channels/{channel_id}/messages", self.list_messages, True),
            ("POST", "/channels/{channel_id}/messages", self.create_message, True),
            ("GET", message, self.get_message, True),
            ("PATCH", message, self.edit_message, True),
            ("DELETE", message, self.delete_message, True),
            ("POST", "/channels/{channel_id}/typing", self.trigger_typing, True),
            ("PUT", message + "/reactions/{emoji}/@me", self.add_own_reaction, True),
            ("DELETE", message + "/reactions/{emoji}/@me", self.remove_own_reaction, True),
            ("POST", message + "/threads", self.thread_from_message, True),
            ("POST", "/channels/{channel_id}/threads", self.thread_without_message, True),
            ("PUT", "/channels/{channel_id}/thread-members/@me", self.join_thread, True),
            ("POST", "/interactions/{interaction_id}/{token}/callback", self.callback, False),
            ("GET", hook + "/messages/@original", self.get_original, False),
            ("PATCH", hook + "/messages/@original", self.edit_original, False),
            ("DELETE", hook + "/messages/@original", self.delete_original, False),
            ("POST", hook, self.followup, False),
            ("GET", hook + "/messages/{message_id}", self.get_webhook_message, False),
            ("PATCH", hook + "/messages/{message_id}", self.edit_webhook_message, False),
            ("DELETE", hook + "/messages/{message_id}", self.delete_webhook_message, False),
        ]

    def _wrap(
        self, handler: Handler, needs_auth: bool
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        """Turn a handler into an aiohttp one that authenticates, answers JSON and records."""

        async def serve(request: web.Request) -> web.Response:
            body, files = await read_body(request)
            call = Call(request, dict(request.match_info), dict(request.query), body, files)
            status, payload = await self._answer(call, handler, needs_auth)
            template = request.match_info.route.resource.canonical  # type: ignore[union-attr]
            route = template.removeprefix(API_PREFIX)
            call.headers = self._default_headers(route, call) | call.headers
            self._record(call, request.method, route, status, payload)
            await self.on_change()
            return _json_response(status, payload, call.headers)

        return serve

    async def _answer(self, call: Call, handler: Handler, needs_auth: bool) -> Answer:
        """Run the handler and turn Discord-style failures into their status and body."""
        try:
            if needs_auth and call.request.headers.get("Authorization") != f"Bot {self.token}":
                raise errors.unauthorized()
            return await handler(call)
        except errors.DiscordError as error:
            return error.status, error.body()
        except RateLimitedError as limited:
            call.headers["Via"] = "1.1 google"
            body = {"message": "You are being rate limited.", "retry_after": limited.retry_after}
            return 429, body | {"global": False}

    def _default_headers(self, route: str, call: Call) -> dict[str, str]:
        """Generous X-RateLimit-* headers for buckets the emulator does not limit."""
        major = call.params.get("channel_id") or call.params.get("token") or ""
        return rate_limit_headers(self.world.clock, f"{route}:{major}", 50, 49, 1.0)

    def _record(self, call: Call, method: str, route: str, status: int, payload: Any) -> None:
        """Append the call to the timeline."""
        entry = RestCall(
            self.world.clock.now(),
            method,
            route,
            call.params,
            call.query,
            call.body,
            status,
            payload,
            call.files,
        )
        self.timeline.append(entry)

    async def _unknown(self, request: web.Request) -> web.Response:
        """Any route the emulator lacks: 404, a loud log line, and a record for the test."""
        log.error("DISCORD EMULATOR: unknown route %s %s", request.method, request.path_qs)
        self.unknown_routes.append((request.method, request.path))
        body, files = await read_body(request) if request.can_read_body else (None, [])
        call = Call(request, {}, dict(request.query), body, files)
        payload = errors.not_found_route().body()
        self._record(call, request.method, request.path, 404, payload)
        await self.on_change()
        return _json_response(404, payload, {})

    def _message_answer(self, message: Message) -> Answer:
        """200 with the REST form of a message."""
        return 200, self.world.message_payload(message)

    def _limit(self, channel_id: int, call: Call) -> None:
        """Refuse a create/edit the bot may not make; count it; raise 429 when limited."""
        channel = self.store.channel(channel_id)
        bits = self.world.channel_permissions(self.world.bot.id, channel_id)
        if not bits & VIEW_CHANNEL:
            raise errors.DiscordError(403, 50001, "Missing Access")
        needed = SEND_MESSAGES_IN_THREADS if channel.is_thread else SEND_MESSAGES
        if channel_id in self.forbidden_channels or not bits & needed:
            raise errors.missing_permissions()
        if channel.is_thread and channel.archived and channel.locked:
            raise errors.thread_archived()
        verdict = self.limiter.take(channel_id)
        call.headers.update(verdict.headers)
        if not verdict.allowed:
            raise RateLimitedError(verdict.retry_after)

    # --- identity, gateway, commands -------------------------------------------------------

    async def get_me(self, call: Call) -> Answer:
        """GET /users/@me."""
        return 200, self.world.bot.payload() | {"verified": True, "mfa_enabled": False}

    async def get_user(self, call: Call) -> Answer:
        """GET /users/{user_id}."""
        member = self.world.members.get(call.int_param("user_id"))
        if member is None:
            raise errors.DiscordError(404, 10013, "Unknown User")
        return 200, member.user.payload()

    async def get_application(self, call: Call) -> Answer:
        """GET /oauth2/applications/@me (and /applications/@me): flags say the intents."""
        return 200, self.world.application_payload() | {"flags": self.application_flags()}

    async def get_gateway(self, call: Call) -> Answer:
        """GET /gateway."""
        return 200, {"url": self.gateway_url()}

    async def get_gateway_bot(self, call: Call) -> Answer:
        """GET /gateway/bot."""
        limit = {"total": 1000, "remaining": 999, "reset_after": 86_400_000, "max_concurrency": 1}
        return 200, {
            "url": self.gateway_url(),
            "shards": self.recommended_shards,
            "session_start_limit": limit,
        }

    def _command_scope(self, call: Call) -> int | None:
        """None for global commands, the guild id for guild commands; checks the ids."""
        if call.int_param("application_id") != self.world.application_id:
            raise errors.DiscordError(403, 50001, "Missing Access")
        if "guild_id" not in call.params:
            return None
        guild_id = call.int_param("guild_id")
        if guild_id not in self.world.guild_names:
            raise errors.DiscordError(403, 50001, "Missing Access")
        return guild_id

    async def get_commands(self, call: Call) -> Answer:
        """GET the registered commands of a scope."""
        return 200, self.commands.get(self._command_scope(call), [])

    async def put_commands(self, call: Call) -> Answer:
        """PUT (bulk overwrite) the commands of a scope, keeping ids of same-named commands."""
        scope = self._command_scope(call)
        definitions = call.body if isinstance(call.body, list) else []
        for index, definition in enumerate(definitions):
            _validate_command(index, definition)
        known = {command["name"]: command["id"] for command in self.commands.get(scope, [])}
        stored = [self._stored_command(d, known.get(d["name"]), scope) for d in definitions]
        self.commands[scope] = stored
        self.command_syncs.append((scope, definitions))
        return 200, stored

    def _stored_command(
        self, definition: dict[str, Any], command_id: str | None, scope: int | None
    ) -> dict[str, Any]:
        """A command as Discord returns it after registration."""
        stored = {
            "type": 1,
            "description": "",
            "options": [],
            "default_member_permissions": None,
            "nsfw": False,
        } | definition
        stored["id"] = command_id or str(self.world.snowflakes.next())
        stored["application_id"] = str(self.world.application_id)
        stored["version"] = str(self.world.snowflakes.next())
        if scope is not None:
            stored["guild_id"] = str(scope)
        return stored

    # --- guild, channels, messages ------------------------------------------------------------

    async def get_member(self, call: Call) -> Answer:
        """GET /guilds/{guild_id}/members/{user_id}."""
        member = self.world.members.get(call.int_param("user_id"))
        if call.int_param("guild_id") not in self.world.guild_names or member is None:
            raise errors.DiscordError(404, 10007, "Unknown Member")
        return 200, member.payload()

    async def get_channel(self, call: Call) -> Answer:
        """GET /channels/{channel_id}."""
        channel = self.store.channel(call.int_param("channel_id"))
        return 200, channel.payload(channel.guild_id)

    async def list_messages(self, call: Call) -> Answer:
        """GET /channels/{channel_id}/messages, newest first, with limit/before/after."""
        channel = self.store.channel(call.int_param("channel_id"))
        limit = min(int(call.query.get("limit", 50)), 100)
        before = int(call.query.get("before", 1 << 63))
        after = int(call.query.get("after", 0))
        found = [
            message
            for message in self.world.messages.values()
            if message.channel_id == channel.id
            and not message.deleted
            and not message.is_ephemeral
            and after < message.id < before
        ]
        found.sort(key=lambda message: message.id, reverse=True)
        if "after" in call.query and "before" not in call.query:
            found = sorted(found, key=lambda message: message.id)[:limit][::-1]
        return 200, [self.world.message_payload(message) for message in found[:limit]]

    async def create_message(self, call: Call) -> Answer:
        """POST /channels/{channel_id}/messages."""
        channel = self.store.channel(call.int_param("channel_id"))
        self._limit(channel.id, call)
        message = await self.store.create(channel.id, call.json, self.world.bot, files=call.files)
        return self._message_answer(message)

    async def get_message(self, call: Call) -> Answer:
        """GET /channels/{channel_id}/messages/{message_id}."""
        message = self.store.get(call.int_param("channel_id"), call.int_param("message_id"))
        return self._message_answer(message)

    async def edit_message(self, call: Call) -> Answer:
        """PATCH /channels/{channel_id}/messages/{message_id} (own messages only)."""
        message = self.store.get(call.int_param("channel_id"), call.int_param("message_id"))
        if message.author.id != self.world.bot.id:
            raise errors.DiscordError(403, 50005, "Cannot edit a message authored by another user")
        self._limit(message.channel_id, call)
        await self.store.edit(message, call.json, files=call.files)
        return self._message_answer(message)

    async def delete_message(self, call: Call) -> Answer:
        """DELETE a message: own ones, or any with Manage Messages."""
        message = self.store.get(call.int_param("channel_id"), call.int_param("message_id"))
        allowed = self.world.permissions_of(self.world.bot.id) & (1 << 13)
        if message.author.id != self.world.bot.id and not allowed:
            raise errors.DiscordError(403, 50013, "Missing Permissions")
        await self.store.delete(message)
        return 204, None

    async def add_own_reaction(self, call: Call) -> Answer:
        """PUT .../reactions/{emoji}/@me: the bot reacts (kept with the time it happened)."""
        message = self.store.get(call.int_param("channel_id"), call.int_param("message_id"))
        emoji = call.params["emoji"]
        message.reactions.append((self.world.clock.now(), "add", emoji))
        return 204, None

    async def remove_own_reaction(self, call: Call) -> Answer:
        """DELETE .../reactions/{emoji}/@me: the bot takes its reaction back."""
        message = self.store.get(call.int_param("channel_id"), call.int_param("message_id"))
        message.reactions.append((self.world.clock.now(), "remove", call.params["emoji"]))
        return 204, None

    async def trigger_typing(self, call: Call) -> Answer:
        """POST /channels/{channel_id}/typing."""
        channel = self.store.channel(call.int_param("channel_id"))
        self.typing.append((self.world.clock.now(), channel.id))
        return 204, None

    async def thread_from_message(self, call: Call) -> Answer:
        """POST /channels/{channel_id}/messages/{message_id}/threads."""
        starter = self.store.get(call.int_param("channel_id"), call.int_param("message_id"))
        thread = await self.store.create_thread(
            starter.channel_id, call.json, self.world.bot, starter
        )
        return 201, thread.payload(thread.guild_id)

    async def thread_without_message(self, call: Call) -> Answer:
        """POST /channels/{channel_id}/threads."""
        parent_id = call.int_param("channel_id")
        thread = await self.store.create_thread(parent_id, call.json, self.world.bot, None)
        return 201, thread.payload(thread.guild_id)

    async def join_thread(self, call: Call) -> Answer:
        """PUT /channels/{channel_id}/thread-members/@me."""
        channel = self.store.channel(call.int_param("channel_id"))
        if not channel.is_thread:
            raise errors.DiscordError(400, 50024, "Cannot execute action on this channel type")
        return 204, None

    # --- interactions and their webhook ---------------------------------------------------------

    async def callback(self, call: Call) -> Answer:
        """POST /interactions/{interaction_id}/{token}/callback."""
        response = await self.interactions.callback(
            call.int_param("interaction_id"), call.params["token"], call.json, call.files
        )
        if call.query.get("with_response") in ("1", "true", "True"):
            return 200, response
        return 204, None

    def _hook(self, call: Call) -> Any:
        """The interaction record behind the webhook in the path."""
        return self.interactions.by_webhook(call.int_param("application_id"), call.params["token"])

    async def get_original(self, call: Call) -> Answer:
        """GET /webhooks/{app}/{token}/messages/@original."""
        return self._message_answer(self.interactions.original(self._hook(call)))

    async def edit_original(self, call: Call) -> Answer:
        """PATCH /webhooks/{app}/{token}/messages/@original."""
        record = self._hook(call)
        message = self.interactions.original(record)
        await self.interactions.edit_message(record, message, call.json, call.files)
        return self._message_answer(message)

    async def delete_original(self, call: Call) -> Answer:
        """DELETE /webhooks/{app}/{token}/messages/@original."""
        await self.store.delete(self.interactions.original(self._hook(call)))
        return 204, None

    async def followup(self, call: Call) -> Answer:
        """POST /webhooks/{app}/{token}: a follow-up message."""
        message = await self.interactions.followup(self._hook(call), call.json, call.files)
        if call.query.get("wait") in ("1", "true", "True"):
            return self._message_answer(message)
        return 204, None

    async def get_webhook_message(self, call: Call) -> Answer:
        """GET /webhooks/{app}/{token}/messages/{message_id}."""
        record = self._hook(call)
        return self._message_answer(
            self.interactions.webhook_message(record, call.int_param("message_id"))
        )

    async def edit_webhook_message(self, call: Call) -> Answer:
        """PATCH /webhooks/{app}/{token}/messages/{message_id}."""
        record = self._hook(call)
        message = self.interactions.webhook_message(record, call.int_param("message_id"))
        await self.interactions.edit_message(record, message, call.json, call.files)
        return self._message_answer(message)

    async def delete_webhook_message(self, call: Call) -> Answer:
        """DELETE /webhooks/{app}/{token}/messages/{message_id}."""
        record = self._hook(call)
        await self.store.delete(
            self.interactions.webhook_message(record, call.int_param("message_id"))
        )
        return 204, None


def _validate_command(index: int, definition: dict[str, Any]) -> None:
    """Refuse command names and descriptions Discord refuses."""
    name = str(definition.get("name", ""))
    if not COMMAND_NAME.match(name) or name != name.lower():
        raise errors.invalid_form_body(
            [index, "name"], "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid"
        )
    if (
        int(definition.get("type", 1)) == 1
        and not 1 <= len(definition.get("description", "")) <= 100
    ):
        raise errors.invalid_form_body(
            [index, "description"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."
        )


def _json_response(status: int, payload: Any, headers: dict[str, str]) -> web.Response:
    """A response whose Content-Type is exactly application/json (what discord.py checks)."""
    if status == 204:
        return web.Response(status=204, headers=headers)
    body = json.dumps(payload).encode()
    return web.Response(
        status=status, body=body, headers=headers | {"Content-Type": "application/json"}
    )
