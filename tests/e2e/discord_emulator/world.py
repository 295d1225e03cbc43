"""The state one emulator holds: the application, its guild, and how messages become payloads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.e2e.discord_emulator.model import (
    CREATE_PUBLIC_THREADS,
    EVERYONE_PERMISSIONS,
    MANAGE_GUILD,
    MANAGE_MESSAGES,
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

    @classmethod
    def build(cls, clock: Clock, bot_name: str = "llm-bot") -> World:
        """The default world: #general and #random, a mod, an admin and two plain users."""
        snowflakes = Snowflakes(clock)
        bot = User(snowflakes.next(), bot_name, bot=True)
        world = cls(clock, snowflakes, bot, application_id=bot.id, guild_id=snowflakes.next())
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

    def add_channel(self, name: str) -> Channel:
        """Create a text channel."""
        channel = Channel(self.snowflakes.next(), name, position=len(self.channels_by_name))
        self.channels[channel.id] = channel
        self.channels_by_name[name] = channel
        return channel

    def add_thread(
        self, parent_id: int, name: str, owner: User, *, thread_id: int | None = None
    ) -> Channel:
        """Create a public thread under a text channel (with the starter message's id if any)."""
        thread = Channel(
            thread_id or self.snowflakes.next(),
            name,
            type=PUBLIC_THREAD,
            parent_id=parent_id,
            owner_id=owner.id,
            created_at=self.clock.wall(),
        )
        self.channels[thread.id] = thread
        return thread

    def permissions_of(self, user_id: int) -> int:
        """The guild-level permission bits of a member (owner and Administrator get everything)."""
        member = self.members[user_id]
        bits = self.roles[self.guild_id].permissions
        for role_id in member.role_ids:
            bits |= self.roles[role_id].permissions
        if user_id == self.owner_id or bits & (1 << 3):
            return (1 << 53) - 1
        return bits

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
        if gateway:
            data["guild_id"] = str(self.guild_id)
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
            data["thread"] = self.channels[message.thread_id].payload(self.guild_id)

    def _mention_payload(self, user: User) -> dict[str, Any]:
        """A user in a message's `mentions`, with their partial member object."""
        data = user.payload()
        data["member"] = self.members[user.id].payload(with_user=False)
        return data

    def guild_payload(self) -> dict[str, Any]:
        """The GUILD_CREATE payload: the whole guild with channels, threads, roles and members."""
        channels = [c for c in self.channels.values() if not c.is_thread]
        threads = [c for c in self.channels.values() if c.is_thread and not c.archived]
        return {
            "id": str(self.guild_id),
            "name": self.guild_name,
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
            "roles": [role.payload() for role in self.roles.values()],
            "emojis": [],
            "stickers": [],
            "channels": [channel.payload(self.guild_id) for channel in channels],
            "threads": [thread.payload(self.guild_id) for thread in threads],
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
