"""DiscordEmulator: the aiohttp server, and the control surface tests drive it with."""

from __future__ import annotations

import asyncio
import mimetypes
from collections.abc import Callable
from types import TracebackType
from typing import Any

from aiohttp import web

from tests.e2e.discord_emulator.gateway import MESSAGE_CONTENT_INTENT, Gateway, GatewayOptions
from tests.e2e.discord_emulator.interactions import InteractionRecord, Interactions
from tests.e2e.discord_emulator.messages import MessageStore
from tests.e2e.discord_emulator.model import (
    PRIVATE_THREAD,
    SEND_MESSAGES,
    Channel,
    Clock,
    Message,
    Role,
    User,
    iso,
)
from tests.e2e.discord_emulator.ratelimit import ChannelMessageLimiter
from tests.e2e.discord_emulator.rest import API_PREFIX, RestApi, RestCall
from tests.e2e.discord_emulator.world import World

DEFAULT_TOKEN = "emulated.bot.token"
OPTION_TYPES_WITH_USERS = (6, 9)
ATTACHMENT_OPTION = 11
SUB_COMMAND = 1
CHANNEL_EVENTS = ("MESSAGE_CREATE", "MESSAGE_UPDATE", "THREAD_CREATE", "THREAD_UPDATE")
"""Events Discord sends a bot only about channels and threads it can view."""


def overwrite(target: Role | User, *, allow: int = 0, deny: int = 0) -> dict[str, Any]:
    """A channel permission overwrite for a role (type 0) or a member (type 1)."""
    kind = 1 if isinstance(target, User) else 0
    return {"id": str(target.id), "type": kind, "allow": str(allow), "deny": str(deny)}


def _guess_type(filename: str) -> str | None:
    """The content type Discord would give a file of this name (None when it has no guess)."""
    return mimetypes.guess_type(filename)[0]


class DiscordEmulator:
    """A local Discord (REST under /api/v10 and the gateway at /gateway) for one bot and guild."""

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        bot_name: str = "llm-bot",
        message_content_enabled: bool = True,
        members_enabled: bool = True,
        enforce_rate_limits: bool = False,
    ) -> None:
        self.token = token
        self.clock = Clock()
        self.world = World.build(self.clock, bot_name)
        self.condition = asyncio.Condition()
        self.options = GatewayOptions(token, message_content_enabled, members_enabled)
        self.gateway = Gateway(self.world, self.options, lambda: self.gateway_url, self._notify)
        self.store = MessageStore(self.world, self._dispatch)
        self.interactions = Interactions(self.world, self.store)
        self.limiter = ChannelMessageLimiter(self.clock, enforce=enforce_rate_limits)
        self.rest = RestApi(
            world=self.world,
            store=self.store,
            interactions=self.interactions,
            limiter=self.limiter,
            token=token,
            gateway_url=lambda: self.gateway_url,
            on_change=self._notify,
            application_flags=lambda: self.gateway.application_flags,
        )
        self.attachment_files: dict[int, bytes] = {}
        self.attachment_downloads: list[int] = []
        """Ids of the attachments the bot downloaded, in order."""
        self.expired_downloads: list[int] = []
        """Ids of the attachments asked for with an expired (or unsigned) URL: answered 404."""
        self._runner: web.AppRunner | None = None
        self.port = 0

    # --- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> DiscordEmulator:
        """Start serving on 127.0.0.1 on a free port."""
        app = web.Application()
        app.router.add_get("/gateway", self.gateway.handle)
        app.router.add_get("/attachments/{attachment_id}/{filename}", self._serve_attachment)
        self.rest.register(app)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self.store.attachment_base = self.base_url
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close every gateway connection and stop the server."""
        await self.gateway.close_all()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        """http://127.0.0.1:port."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        """What discord.http.Route.BASE (DISCORD_API_BASE) must be set to."""
        return self.base_url + API_PREFIX

    @property
    def gateway_url(self) -> str:
        """What DiscordWebSocket.DEFAULT_GATEWAY (DISCORD_GATEWAY_URL) must be set to."""
        return f"ws://127.0.0.1:{self.port}/gateway"

    # --- settings tests flip --------------------------------------------------------------------

    @property
    def enforce_rate_limits(self) -> bool:
        """Whether the per-channel 5-per-5-s message limit answers 429."""
        return self.limiter.enforce

    @enforce_rate_limits.setter
    def enforce_rate_limits(self, value: bool) -> None:
        self.limiter.enforce = value

    def forbid_sending(self, channel_id: int) -> None:
        """From now on the bot's sends and edits in this channel get 403 50013 (no permission)."""
        self.rest.forbidden_channels.add(channel_id)

    async def deny_bot_sending(self, channel_id: int, *, denied: bool = True) -> None:
        """Set (or lift) a channel overwrite that denies the bot's role Send Messages, as a server
        admin would; the bot learns it from CHANNEL_UPDATE, and REST refuses its sends too."""
        channel = self.store.channel(channel_id)
        bot_role = next(r for r in self.world.roles.values() if r.bot_id == self.bot_user.id)
        channel.overwrites = (
            [{"id": str(bot_role.id), "type": 0, "allow": "0", "deny": str(SEND_MESSAGES)}]
            if denied
            else []
        )
        if denied:
            self.rest.forbidden_channels.add(channel_id)
        else:
            self.rest.forbidden_channels.discard(channel_id)
        await self._dispatch("CHANNEL_UPDATE", channel.payload(channel.guild_id))

    async def add_role(self, name: str, permissions: int = 0) -> Role:
        """A server admin creates a role; dispatches GUILD_ROLE_CREATE."""
        role = self.world.add_role(name, permissions, position=1)
        data = {"guild_id": str(self.world.guild_id), "role": role.payload()}
        await self._dispatch("GUILD_ROLE_CREATE", data)
        return role

    def add_user(self, name: str, role_names: list[str] | None = None) -> User:
        """Someone joins the server with the named roles (no event: the bot has no members
        intent; messages and interactions carry the member's roles)."""
        return self.world.add_user(name, role_names)

    async def create_channel(
        self, name: str, overwrites: list[dict[str, Any]] | None = None
    ) -> Channel:
        """A server admin creates a text channel with these overwrites (see `overwrite`);
        dispatches CHANNEL_CREATE."""
        channel = self.world.add_channel(name)
        channel.overwrites = list(overwrites or [])
        await self._dispatch("CHANNEL_CREATE", channel.payload(self.world.guild_id))
        return channel

    async def set_overwrites(self, channel_id: int, overwrites: list[dict[str, Any]]) -> None:
        """A server admin replaces a channel's overwrites; dispatches CHANNEL_UPDATE."""
        channel = self.store.channel(channel_id)
        channel.overwrites = list(overwrites)
        await self._dispatch("CHANNEL_UPDATE", channel.payload(self.world.guild_id))

    def bot_role(self) -> Role:
        """The bot's own managed role."""
        return next(r for r in self.world.roles.values() if r.bot_id == self.world.bot.id)

    async def lock_thread(self, thread_id: int) -> None:
        """A moderator archives and locks a thread: the bot's sends and edits there get 50083."""
        thread = self.store.channel(thread_id)
        thread.archived = thread.locked = True
        await self._dispatch("THREAD_UPDATE", thread.payload(thread.guild_id))

    def reject_token(self, record: InteractionRecord, *, code: int = 50027) -> None:
        """Discord refuses the interaction's token from now on, early: 401 50027 by default,
        404 10015 (Unknown Webhook) with code=10015."""
        self.interactions.reject_token(record, code=code)

    def advance_clock(self, seconds: float) -> None:
        """Let emulated time pass: acknowledgement deadlines, token expiry, rate-limit windows."""
        self.clock.advance(seconds)

    # --- what the world holds ---------------------------------------------------------------------

    @property
    def bot_user(self) -> User:
        """The application's bot user."""
        return self.world.bot

    @property
    def guild_id(self) -> int:
        """The one guild's id."""
        return self.world.guild_id

    def user(self, name: str) -> User:
        """A member by name: owner, alice, bob, mod (Manage Messages), admin (Manage Guild)."""
        return self.world.users_by_name[name]

    def open_dm(self, user: User | str) -> Channel:
        """The DM channel between a user and the bot (type 1, no server); `inject_message`
        into it sends MESSAGE_CREATE without `guild_id`, to shard 0 only."""
        return self.world.add_dm(self.user(user) if isinstance(user, str) else user)

    def channel(self, name: str) -> Channel:
        """A text channel by name: general, random."""
        return self.world.channels_by_name[name]

    def bot_role_mention(self) -> str:
        """The `<@&id>` mention of the bot's managed role."""
        role = next(r for r in self.world.roles.values() if r.bot_id == self.world.bot.id)
        return role.mention

    # --- waiting without sleeping ------------------------------------------------------------

    async def _notify(self) -> None:
        """Wake every waiter: something was requested or dispatched."""
        async with self.condition:
            self.condition.notify_all()

    async def wait_until(
        self,
        predicate: Callable[[], bool],
        timeout: float = 10.0,  # noqa: ASYNC109 -- a deadline per wait keeps e2e tests readable
    ) -> None:
        """Return once predicate() holds; re-checked after every REST call and gateway frame."""
        async with asyncio.timeout(timeout), self.condition:
            await self.condition.wait_for(predicate)

    async def wait_for_ready(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Return once a client has identified and been sent the guild."""
        await self.wait_until(lambda: self.gateway.ready, timeout)

    async def wait_for_call(
        self,
        method: str,
        route: str,
        *,
        count: int = 1,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> RestCall:
        """Wait for the count-th call to a route template and return it."""
        await self.wait_until(lambda: len(self.calls(method, route)) >= count, timeout)
        return self.calls(method, route)[count - 1]

    # --- reading what the bot did ---------------------------------------------------------------

    @property
    def timeline(self) -> list[RestCall]:
        """Every REST call in order, with emulator-clock times."""
        return self.rest.timeline

    @property
    def unknown_routes(self) -> list[tuple[str, str]]:
        """(method, path) of every request to a route the emulator does not serve."""
        return self.rest.unknown_routes

    @property
    def served_429(self) -> int:
        """How many 429 answers the per-channel limiter gave."""
        return self.limiter.served_429

    def calls(self, method: str | None = None, route: str | None = None) -> list[RestCall]:
        """Timeline entries filtered by method and route template (e.g. /channels/{channel_id})."""
        return [
            call
            for call in self.rest.timeline
            if (method is None or call.method == method) and (route is None or call.route == route)
        ]

    def messages_in(self, channel_id: int, *, include_deleted: bool = False) -> list[Message]:
        """The messages of a channel or thread, oldest first."""
        found = [
            m
            for m in self.world.messages.values()
            if m.channel_id == channel_id and (include_deleted or not m.deleted)
        ]
        return sorted(found, key=lambda message: message.id)

    def message(self, message_id: int) -> Message:
        """One message with its final content and every revision (`.edits`)."""
        return self.world.messages[message_id]

    def bot_messages(self, channel_id: int) -> list[Message]:
        """The bot's live messages in a channel, oldest first."""
        return [m for m in self.messages_in(channel_id) if m.author.id == self.world.bot.id]

    def interaction(self, interaction_id: int) -> InteractionRecord:
        """An injected interaction and what the bot answered."""
        return self.interactions.records[interaction_id]

    # --- injecting what users do ------------------------------------------------------------

    async def _dispatch(self, event: str, data: Any, *, shard: int | None = None) -> None:
        """Send a gateway event to the sessions of its server's shard (or of `shard`), hiding
        content from clients without the message content intent; events of a channel or thread
        the bot cannot view are not sent (as on Discord)."""
        if event in CHANNEL_EVENTS and not self._bot_sees(data):
            await self._notify()
            return
        for session in self.gateway.receivers(data, shard=shard):
            payload = data
            if event in ("MESSAGE_CREATE", "MESSAGE_UPDATE"):
                payload = self._as_seen_by(data, session.intents or 0)
            await session.dispatch(event, payload)
        await self._notify()

    def _bot_sees(self, data: dict[str, Any]) -> bool:
        """Whether the bot may view the channel or thread an event is about."""
        channel_id = int(data["channel_id"] if "channel_id" in data else data["id"])
        if channel_id not in self.world.channels:
            return True
        return self.world.can_view(self.world.bot.id, channel_id)

    def _as_seen_by(self, message: dict[str, Any], intents: int) -> dict[str, Any]:
        """Without the message content intent, content is empty unless the bot is mentioned."""
        if intents & MESSAGE_CONTENT_INTENT or message["author"]["id"] == str(self.world.bot.id):
            return message
        if any(user["id"] == str(self.world.bot.id) for user in message["mentions"]):
            return message
        return message | {"content": "", "embeds": [], "attachments": [], "components": []}

    async def inject_message(
        self,
        channel_id: int,
        author: User | str,
        content: str,
        *,
        reply_to: int | None = None,
        attachments: list[tuple[str, bytes]] | None = None,
        mentions: list[User] | None = None,
    ) -> dict[str, Any]:
        """A user posts in a channel or thread: dispatches MESSAGE_CREATE, returns its payload.

        Attachments get the content type their names suggest and signed URLs (see
        `signed_attachment`); their bytes are served until the URL expires."""
        user = self.user(author) if isinstance(author, str) else author
        channel = self.store.channel(channel_id)
        body: dict[str, Any] = {"content": content}
        if reply_to is not None:
            body["message_reference"] = {"message_id": str(reply_to)}
        message = await self.store.create(
            channel.id,
            body,
            user,
            files=[
                {"filename": name, "size": len(data), "content_type": _guess_type(name)}
                for name, data in attachments or []
            ],
            allow_empty=True,
        )
        self._store_uploads(message, attachments or [])
        message.mentions += [u for u in mentions or [] if u not in message.mentions]
        return self.world.message_payload(message, gateway=True)

    def _store_uploads(self, message: Message, uploads: list[tuple[str, bytes]]) -> None:
        """Keep injected attachments' bytes, served at the URLs their payloads (already) carry."""
        for attachment, (_, data) in zip(message.attachments, uploads, strict=True):
            self.attachment_files[int(attachment["id"])] = data

    def upload_attachment(self, filename: str, data: bytes) -> dict[str, Any]:
        """A file a user attaches to a slash command's attachment option (it belongs to no
        message); pass the returned object as that option's value."""
        attachment = self.store.attachments(
            [{"filename": filename, "size": len(data), "content_type": _guess_type(filename)}]
        )[0]
        self.attachment_files[int(attachment["id"])] = data
        return attachment

    async def delete_message(self, message_id: int) -> None:
        """A user (or a moderator) deletes a message: dispatches MESSAGE_DELETE; its attachments
        are no longer served."""
        message = self.world.messages[message_id]
        await self.store.delete(message)
        for attachment in message.attachments:
            self.attachment_files.pop(int(attachment["id"]), None)

    async def _serve_attachment(self, request: web.Request) -> web.Response:
        """GET /attachments/{id}/{filename}?ex=...: an attachment's bytes while its signed URL
        holds; 404 once `ex` (hex unix time on the emulator's clock) has passed, as on Discord."""
        attachment_id = int(request.match_info["attachment_id"])
        data = self.attachment_files.get(attachment_id)
        if data is None:
            raise web.HTTPNotFound
        try:
            expires = int(request.query.get("ex", "0"), 16)
        except ValueError:
            expires = 0
        if expires <= self.clock.wall().timestamp():
            self.expired_downloads.append(attachment_id)
            raise web.HTTPNotFound(text="This content is no longer available.")
        self.attachment_downloads.append(attachment_id)
        return web.Response(body=data, content_type="application/octet-stream")

    async def create_user_thread(
        self,
        parent_id: int,
        name: str,
        owner: User | str,
        *,
        private: bool = False,
        members: list[User | str] | None = None,
    ) -> Channel:
        """A user starts a thread (without a starter message); dispatches THREAD_CREATE (for a
        private thread, only if the bot is one of its `members`)."""
        user = self.user(owner) if isinstance(owner, str) else owner
        body: dict[str, Any] = {"name": name}
        if private:
            body["type"] = PRIVATE_THREAD
        invited = [self.user(m) if isinstance(m, str) else m for m in members or []]
        return await self.store.create_thread(parent_id, body, user, None, members=invited)

    async def bulk_delete(self, channel_id: int, message_ids: list[int]) -> None:
        """A moderator purges messages; dispatches one MESSAGE_DELETE_BULK."""
        for message_id in message_ids:
            self.world.messages[message_id].deleted = True
        event = {
            "ids": [str(message_id) for message_id in message_ids],
            "channel_id": str(channel_id),
            "guild_id": str(self.world.guild_id),
        }
        await self._dispatch("MESSAGE_DELETE_BULK", event)

    async def edit_user_message(self, message_id: int, content: str) -> None:
        """Its author edits a message; dispatches MESSAGE_UPDATE with the whole new message."""
        await self.store.edit(self.world.messages[message_id], {"content": content})

    async def remove_bot_from_guild(self) -> None:
        """The server kicks the bot: dispatches GUILD_DELETE without `unavailable`."""
        await self._dispatch("GUILD_DELETE", {"id": str(self.world.guild_id)})

    async def inject_interaction(
        self,
        command_name: str,
        options: dict[str, Any] | None = None,
        *,
        user: User | str,
        channel_id: int,
        age: float = 0.0,
        subcommand: str | None = None,
    ) -> InteractionRecord:
        """A user runs a synced slash command; dispatches INTERACTION_CREATE (type 2).
        `subcommand` names one of a group's commands (`options` are then that one's).

        `age` back-dates the interaction (its snowflake and its token's 15 minutes) by that many
        seconds, so a bot on the real clock reaches the token's expiry soon after. With
        `subcommand`, the options are that subcommand's (a command group such as /access).
        Users, roles and channels given as option values are sent resolved, as Discord does.
        """
        member = self.user(user) if isinstance(user, str) else user
        command = self._synced_command(command_name)
        data: dict[str, Any] = {"id": command["id"], "name": command_name, "type": 1}
        if "guild_id" in command:
            data["guild_id"] = command["guild_id"]
        definition = command
        if subcommand is not None:
            definition = next(o for o in command["options"] if o["name"] == subcommand)
        if options or subcommand is not None:
            sent, resolved = self._options(definition, options or {})
            if subcommand is not None:
                sent = [{"name": subcommand, "type": SUB_COMMAND, "options": sent}]
            data["options"] = sent
            if resolved:
                data["resolved"] = resolved
        record = self.interactions.new_record(2, member, channel_id, data, age=age)
        await self._dispatch("INTERACTION_CREATE", record.payload)
        return record

    async def inject_autocomplete(
        self,
        command_name: str,
        option: str,
        typed: str,
        *,
        user: User | str,
        channel_id: int,
    ) -> InteractionRecord:
        """A user types into a command option with autocomplete; dispatches type 4, whose
        answer (callback type 8) lists the choices in `callback_body["data"]["choices"]`."""
        member = self.user(user) if isinstance(user, str) else user
        command = self._synced_command(command_name)
        types = {o["name"]: o["type"] for o in command.get("options", [])}
        data: dict[str, Any] = {
            "id": command["id"],
            "name": command_name,
            "type": 1,
            "options": [
                {"name": option, "type": types.get(option, 3), "value": typed, "focused": True}
            ],
        }
        record = self.interactions.new_record(4, member, channel_id, data)
        await self._dispatch("INTERACTION_CREATE", record.payload)
        return record

    def _synced_command(self, name: str) -> dict[str, Any]:
        """A registered command by name (guild commands first); unsynced ones cannot be run."""
        for scope in (self.world.guild_id, None):
            for command in self.rest.commands.get(scope, []):
                if command["name"] == name:
                    return command
        raise LookupError(f"/{name} was never synced to the emulator")

    def _options(
        self, command: dict[str, Any], values: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Typed option values as Discord sends them, with resolved users, roles and channels."""
        types = {option["name"]: option["type"] for option in command.get("options", [])}
        options: list[dict[str, Any]] = []
        resolved: dict[str, dict[str, Any]] = {}
        for name, value in values.items():
            kind = types.get(name, 3)
            sent = value
            if isinstance(value, User):
                resolved.setdefault("users", {})[str(value.id)] = value.payload()
                member = self.world.members[value.id].payload(with_user=False)
                resolved.setdefault("members", {})[str(value.id)] = member
            elif isinstance(value, Role):
                resolved.setdefault("roles", {})[str(value.id)] = value.payload()
            elif isinstance(value, Channel):
                channel = value.payload(self.world.guild_id) | {"permissions": str((1 << 53) - 1)}
                resolved.setdefault("channels", {})[str(value.id)] = channel
            elif kind == ATTACHMENT_OPTION:  # an object from upload_attachment
                attachment = self.world.signed_attachment(value)
                resolved.setdefault("attachments", {})[value["id"]] = attachment
                sent = value["id"]
            if isinstance(value, User | Role | Channel):
                sent = str(value.id)
            options.append({"name": name, "type": kind, "value": sent})
        return options, resolved

    async def inject_component(
        self,
        message_id: int,
        custom_id: str,
        user: User | str,
        *,
        component_type: int = 2,
        shard: int | None = None,
    ) -> InteractionRecord:
        """A user presses a button on a message; dispatches INTERACTION_CREATE (type 3).

        `shard` delivers it to that shard's sessions instead of the server's own, as happens
        while a bot changes its shard count (old and new sessions overlap)."""
        member = self.user(user) if isinstance(user, str) else user
        message = self.world.messages[message_id]
        data = {"custom_id": custom_id, "component_type": component_type}
        record = self.interactions.new_record(3, member, message.channel_id, data)
        record.payload["message"] = self.world.message_payload(message)
        record.component_message_id = message.id
        await self._dispatch("INTERACTION_CREATE", record.payload, shard=shard)
        return record

    async def reconnect_clients(self) -> None:
        """Send op 7 RECONNECT to every client."""
        await self.gateway.reconnect_all()


__all__ = ["DiscordEmulator", "iso"]
