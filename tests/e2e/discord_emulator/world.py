"""The state one emulator holds: the application, its guild, and how messages become payloads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.e2e.discord_emulator.model import (
    ADMINISTRATOR,
    ALL_PERMISSIONS,
    CREATE_PUBLIC_THREADS,
    DM_CHANNEL,
    EVERYONE_PERMISSIONS,
    MANAGE_GUILD,
    MANAGE_MESSAGES,
    MANAGE_THREADS,
    PRIVATE_THREAD,
    PUBLIC_THREAD,
    READ_MESSAGE_HISTORY,
    SEND_MESSAGES,
    SEND_MESSAGES_IN_THREADS,
    VIEW_CHANNEL,
    Channel,
    Clock,
    Member,
    Message,
    Role,
    Snowflakes,
    User,
    iso,
    parse_mentions,
)

ATTACHMENT_URL_SECONDS = 24 * 3600
"""How long a signed attachment URL works (`ex`, as on Discord's CDN: about a day)."""

BOT_ROLE_PERMISSIONS = (
    VIEW_CHANNEL
    | SEND_MESSAGES
    | READ_MESSAGE_HISTORY
    | CREATE_PUBLIC_THREADS
    | SEND_MESSAGES_IN_THREADS
)


@dataclass
class World:
    """One application with its bot user, in one guild with channels, roles and members."""

    clock: Clock
    snowflakes: Snowflakes
    bot: User
    application_id: int
    guild_id: int
    guild_name: str = "Emulated Guild"
    owner_id: int = 0
    roles: dict[int, Role] = field(default_factory=dict)
    members: dict[int, Member] = field(default_factory=dict)
    channels: dict[int, Channel] = field(default_factory=dict)
    messages: dict[int, Message] = field(default_factory=dict)
    users_by_name: dict[str, User] = field(default_factory=dict)
    roles_by_name: dict[str, Role] = field(default_factory=dict)
    channels_by_name: dict[str, Channel] = field(default_factory=dict)
    guild_names: dict[int, str] = field(default_factory=dict)
    """Every server of the world by id, the first (`guild_id`) included."""

    @classmethod
    def build(cls, clock: Clock, bot_name: str = "llm-bot") -> World:
        """The default world: #general and #random, a mod, an admin and two plain users."""
        snowflakes = Snowflakes(clock)
        bot = User(snowflakes.next(), bot_name, bot=True)
        world = cls(clock, snowflakes, bot, application_id=bot.id, guild_id=snowflakes.next())
        world.guild_names[world.guild_id] = world.guild_name
        world.add_role("@everyone", EVERYONE_PERMISSIONS, role_id=world.guild_id)
        world.add_role("Moderators", MANAGE_MESSAGES, position=2)
        world.add_role("Admins", MANAGE_GUILD, position=3)
        bot_role = world.add_role(bot_name, BOT_ROLE_PERMISSIONS, position=1, bot_id=bot.id)
        world.add_member(bot, [bot_role.id])
        owner = world.add_user("owner")
        world.owner_id = owner.id
        world.add_user("alice")
        world.add_user("bob")
        world.add_user("mod", ["Moderators"])
        world.add_user("admin", ["Admins"])
        world.add_channel("general")
        world.add_channel("random")
        return world

    def add_guild(self, name: str, *, shard: tuple[int, int] | None = None) -> int:
        """Another server with the same members and roles (and its own @everyone), on shard
        `(id, count)` when given; its channels are added with `add_channel(..., guild_id=)`."""
        guild_id = self.snowflakes.on_shard(*shard) if shard else self.snowflakes.next()
        self.guild_names[guild_id] = name
        everyone = self.roles[self.guild_id]
        self.roles[guild_id] = Role(guild_id, "@everyone", everyone.permissions)
        return guild_id

    def guilds_of_shard(self, shard: tuple[int, int] | None) -> list[int]:
        """The servers whose events go to a session of shard `(id, count)` (all without one)."""
        if shard is None:
            return list(self.guild_names)
        number, count = shard
        return [guild for guild in self.guild_names if (guild >> 22) % count == number]

    def guild_of(self, channel_id: int) -> int:
        """The server a channel or thread is in."""
        channel = self.channels.get(channel_id)
        return channel.guild_id if channel is not None and channel.guild_id else self.guild_id

    def add_role(
        self,
        name: str,
        permissions: int,
        *,
        position: int = 0,
        bot_id: int | None = None,
        role_id: int | None = None,
    ) -> Role:
        """Create a role (the bot's managed role when bot_id is given)."""
        role = Role(
            role_id or self.snowflakes.next(),
            name,
            permissions,
            position=position,
            managed=bot_id is not None,
            bot_id=bot_id,
        )
        self.roles[role.id] = role
        self.roles_by_name[name] = role
        return role

    def add_member(self, user: User, role_ids: list[int]) -> Member:
        """Make a user a member of the guild with the given roles."""
        member = Member(user, role_ids, self.clock.wall())
        self.members[user.id] = member
        self.users_by_name[user.username] = user
        return member

    def add_user(self, name: str, role_names: list[str] | None = None) -> User:
        """Create a human user and make them a member with the named roles."""
        user = User(self.snowflakes.next(), name)
        self.add_member(user, [self.roles_by_name[role].id for role in role_names or []])
        return user

    def add_channel(self, name: str, *, guild_id: int | None = None) -> Channel:
        """Create a text channel (in the first server unless another is named)."""
        channel = Channel(
            self.snowflakes.next(),
            name,
            position=len(self.channels_by_name),
            guild_id=guild_id or self.guild_id,
        )
        self.channels[channel.id] = channel
        self.channels_by_name[name] = channel
        return channel

    def add_dm(self, user: User) -> Channel:
        """The DM channel between a user and the bot (opened once, then the same one)."""
        for channel in self.channels.values():
            if channel.is_dm and channel.recipient == user:
                return channel
        channel = Channel(self.snowflakes.next(), "", type=DM_CHANNEL, recipient=user)
        self.channels[channel.id] = channel
        return channel

    def is_dm(self, channel_id: int) -> bool:
        """Whether a channel is a DM (it belongs to no server)."""
        channel = self.channels.get(channel_id)
        return channel is not None and channel.is_dm

    def add_thread(
        self,
        parent_id: int,
        name: str,
        owner: User,
        *,
        thread_id: int | None = None,
        private: bool = False,
    ) -> Channel:
        """Create a thread under a text channel (with the starter message's id if any); a
        private one has its owner as its first member."""
        thread = Channel(
            thread_id or self.snowflakes.next(),
            name,
            type=PRIVATE_THREAD if private else PUBLIC_THREAD,
            parent_id=parent_id,
            owner_id=owner.id,
            created_at=self.clock.wall(),
            guild_id=self.guild_of(parent_id),
            member_ids={owner.id} if private else set(),
        )
        self.channels[thread.id] = thread
        return thread

    def permissions_of(self, user_id: int, guild_id: int | None = None) -> int:
        """The guild-level permission bits of a member (owner and Administrator get everything)."""
        member = self.members[user_id]
        bits = self.roles[guild_id or self.guild_id].permissions
        for role_id in member.role_ids:
            bits |= self.roles[role_id].permissions
        if user_id == self.owner_id or bits & ADMINISTRATOR:
            return ALL_PERMISSIONS
        return bits

    def channel_permissions(self, user_id: int, channel_id: int) -> int:
        """A member's permission bits in a channel, as Discord computes them: the guild-level
        bits, then the channel's @everyone overwrite, then its role overwrites together, then
        the member's own; without View Channel, none. A thread uses its parent's; a private
        thread is visible only to its members and to Manage Threads."""
        if self.is_dm(channel_id):
            return EVERYONE_PERMISSIONS  # no server, no roles: a DM's own fixed permissions
        guild_id = self.guild_of(channel_id)
        bits = self.permissions_of(user_id, guild_id)
        if bits == ALL_PERMISSIONS:
            return bits
        channel = self.channels[channel_id]
        if channel.is_thread and channel.parent_id is not None:
            bits = self.channel_permissions(user_id, channel.parent_id)
            private = channel.type == PRIVATE_THREAD
            if private and user_id not in channel.member_ids and not bits & MANAGE_THREADS:
                return 0
            return bits
        overwrites = {int(o["id"]): o for o in channel.overwrites}
        everyone = overwrites.get(guild_id)
        if everyone is not None:
            bits = (bits & ~int(everyone["deny"])) | int(everyone["allow"])
        roles = [
            overwrites[role_id]
            for role_id in self.members[user_id].role_ids
            if role_id in overwrites and role_id != guild_id
        ]
        denied = allowed = 0
        for overwrite in roles:
            denied |= int(overwrite["deny"])
            allowed |= int(overwrite["allow"])
        bits = (bits & ~denied) | allowed
        own = overwrites.get(user_id)
        if own is not None and int(own.get("type", 1)) == 1:
            bits = (bits & ~int(own["deny"])) | int(own["allow"])
        return bits if bits & VIEW_CHANNEL else 0

    def can_view(self, user_id: int, channel_id: int) -> bool:
        """Whether a member may view a channel or thread now."""
        return bool(self.channel_permissions(user_id, channel_id) & VIEW_CHANNEL)

    def user(self, user_id: int) -> User:
        """A known user by id."""
        return self.members[user_id].user

    def resolve_mentions(
        self, message: Message, allowed: dict[str, Any] | None, replied_to: Message | None
    ) -> None:
        """Fill the message's mentions as Discord would, honouring allowed_mentions."""
        user_ids, role_ids, everyone = parse_mentions(message.content)
        parse = ["users", "roles", "everyone"] if allowed is None else allowed.get("parse", [])
        allowed_users = {int(u) for u in (allowed or {}).get("users", [])}
        allowed_roles = {int(r) for r in (allowed or {}).get("roles", [])}
        pinged = [u for u in user_ids if "users" in parse or u in allowed_users]
        if replied_to is not None and (allowed is None or allowed.get("replied_user", False)):
            pinged.append(replied_to.author.id)
        message.mentions = [self.user(u) for u in dict.fromkeys(pinged) if u in self.members]
        message.mention_roles = [
            r for r in role_ids if r in self.roles and ("roles" in parse or r in allowed_roles)
        ]
        message.mention_everyone = everyone and "everyone" in parse

    def message_payload(self, message: Message, *, gateway: bool = False) -> dict[str, Any]:
        """The message object Discord sends over REST (or, with member data, over the gateway)."""
        data: dict[str, Any] = {
            "id": str(message.id),
            "channel_id": str(message.channel_id),
            "author": message.author.payload(),
            "content": message.content,
            "timestamp": iso(message.timestamp),
            "edited_timestamp": iso(message.edited_timestamp) if message.edited_timestamp else None,
            "tts": False,
            "mention_everyone": message.mention_everyone,
            "mentions": [self._mention_payload(user) for user in message.mentions],
            "mention_roles": [str(role_id) for role_id in message.mention_roles],
            "attachments": [self.signed_attachment(a) for a in message.attachments],
            "embeds": message.embeds,
            "components": message.components,
            "pinned": False,
            "type": message.type,
            "flags": message.flags,
        }
        self._add_optional_fields(message, data)
        if gateway and not self.is_dm(message.channel_id):
            data["guild_id"] = str(self.guild_of(message.channel_id))
            if message.author.id in self.members and message.webhook_id is None:
                data["member"] = self.members[message.author.id].payload(with_user=False)
        return data

    def signed_attachment(self, attachment: dict[str, Any]) -> dict[str, Any]:
        """An attachment object whose URLs are signed now: `ex` (hex unix time) is when they
        stop working, as on Discord, so every payload carries fresh ones."""
        issued = int(self.clock.wall().timestamp())
        query = f"?ex={issued + ATTACHMENT_URL_SECONDS:x}&is={issued:x}"
        return attachment | {
            "url": attachment["url"] + query,
            "proxy_url": attachment["proxy_url"] + query,
        }

    def _add_optional_fields(self, message: Message, data: dict[str, Any]) -> None:
        """Reference, referenced message, webhook id and thread, when the message has them."""
        if message.message_reference is not None:
            data["message_reference"] = message.message_reference
            referenced = self.messages.get(int(message.message_reference["message_id"]))
            if referenced is not None and not referenced.deleted:
                data["referenced_message"] = self.message_payload(referenced)
        if message.webhook_id is not None:
            data["webhook_id"] = str(message.webhook_id)
            data["application_id"] = str(self.application_id)
        if message.thread_id is not None:
            thread = self.channels[message.thread_id]
            data["thread"] = thread.payload(thread.guild_id)

    def _mention_payload(self, user: User) -> dict[str, Any]:
        """A user in a message's `mentions`, with their partial member object."""
        data = user.payload()
        data["member"] = self.members[user.id].payload(with_user=False)
        return data

    def guild_payload(self, guild_id: int | None = None) -> dict[str, Any]:
        """The GUILD_CREATE payload: the whole guild with channels, threads, roles and members."""
        guild_id = guild_id or self.guild_id
        mine = [c for c in self.channels.values() if c.guild_id == guild_id]
        channels = [c for c in mine if not c.is_thread]
        threads = [c for c in mine if c.is_thread and not c.archived]
        roles = [r for r in self.roles.values() if r.id == guild_id or r.id not in self.guild_names]
        return {
            "id": str(guild_id),
            "name": self.guild_names[guild_id],
            "icon": None,
            "owner_id": str(self.owner_id),
            "unavailable": False,
            "large": False,
            "member_count": len(self.members),
            "joined_at": iso(self.members[self.bot.id].joined_at),
            "features": [],
            "preferred_locale": "en-US",
            "verification_level": 0,
            "default_message_notifications": 1,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "system_channel_id": None,
            "roles": [role.payload() for role in roles],
            "emojis": [],
            "stickers": [],
            "channels": [channel.payload(guild_id) for channel in channels],
            "threads": [thread.payload(guild_id) for thread in threads],
            "members": [member.payload() for member in self.members.values()],
            "voice_states": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
        }

    def application_payload(self) -> dict[str, Any]:
        """GET /oauth2/applications/@me."""
        return {
            "id": str(self.application_id),
            "name": self.bot.username,
            "icon": None,
            "description": "",
            "summary": "",
            "type": None,
            "bot_public": True,
            "bot_require_code_grant": False,
            "verify_key": "0" * 64,
            "flags": 1 << 19,
            "owner": self.user(self.owner_id).payload(),
            "team": None,
            "bot": self.bot.payload(),
            "rpc_origins": [],
            "redirect_uris": [],
            "tags": [],
        }
