"""Where a turn happens and who is there, from Discord objects: the memory's Place, Caller and
Viewer (see bot/core/tools/context.py and memory_store.py for what they decide).

Everything is computed from the client's cache (channels, their overwrites and the roles come
with the guilds intent alone) and from the member an event or interaction carries, which holds
that member's roles: no member lookups, which would need the members intent.
"""

from __future__ import annotations

from typing import Any

import discord

from bot.core.tools.context import Caller, Place, ToolContext
from bot.core.tools.memory_store import Viewer
from bot.frontend.messages import speaker_name

GuildPlace = discord.abc.GuildChannel | discord.Thread


def everyone_can_view(channel: discord.abc.GuildChannel) -> bool:
    """Whether @everyone may view a channel now (its overwrites and @everyone's permissions)."""
    return channel.permissions_for(channel.guild.default_role).view_channel


def is_private_thread(channel: GuildPlace) -> bool:
    """Whether a channel is a private thread (its own members only, never public)."""
    private = discord.ChannelType.private_thread
    return isinstance(channel, discord.Thread) and channel.type == private


def place_of(channel: GuildPlace) -> Place:
    """The memory's place for a server channel or thread.

    A public thread takes its parent's visibility and scope; a private thread is never public
    and its facts stay in it. A thread whose parent is not cached counts as private (safe)."""
    guild = str(channel.guild.id)
    if isinstance(channel, discord.Thread):
        parent = channel.parent
        private = is_private_thread(channel)
        public = not private and parent is not None and everyone_can_view(parent)
        return Place(
            guild=guild,
            channel=str(channel.id),
            parent=str(channel.parent_id),
            thread="private" if private else "public",
            public=public,
        )
    return Place(guild=guild, channel=str(channel.id), public=everyone_can_view(channel))


def manages_server(member: discord.abc.User) -> bool:
    """Whether a member has Manage Server (or Administrator, or owns the server)."""
    return isinstance(member, discord.Member) and member.guild_permissions.manage_guild


def caller_of(member: discord.abc.User) -> Caller:
    """Who asks: their id, the name the model knows them by, and Manage Server."""
    return Caller(str(member.id), name=speaker_name(member), manage_server=manages_server(member))


def tool_context(channel: GuildPlace | discord.DMChannel, member: discord.abc.User) -> ToolContext:
    """The place and the caller of a turn asked by `member` in `channel`; a DM is a place of its
    own, whose facts never reach a server (nor a server's facts it)."""
    if isinstance(channel, discord.DMChannel):
        return ToolContext(Place.dm(str(channel.id)), caller_of(member))
    return ToolContext(place_of(channel), caller_of(member))


def viewer_of(guild: discord.Guild, member: discord.Member) -> Viewer:
    """Someone looking at the server's memory: the channels and threads they can view now,
    worked out from the cached overwrites and the roles the member carries, and their rights.

    Threads count when their parent is viewable; a private thread's facts are decided by the
    store (their author, or Manage Threads in the thread's channel)."""
    visible = {
        channel.id
        for channel in guild.channels
        if not isinstance(channel, discord.CategoryChannel)
        and channel.permissions_for(member).view_channel
    }
    threads = {
        thread.id
        for thread in guild.threads
        if thread.parent_id in visible and not is_private_thread(thread)
    }
    perms = member.guild_permissions
    return Viewer(
        user_id=str(member.id),
        channels=frozenset(str(i) for i in visible | threads),
        manage_threads=perms.manage_threads,
        manage_server=perms.manage_guild,
    )


def interaction_context(interaction: discord.Interaction[Any]) -> ToolContext | None:
    """The turn context of a slash command or button used in a server channel or thread; None
    elsewhere, and where this process does not hold the server (another shard's: its channel is
    not cached, so its visibility cannot be told, and that process answers without tools)."""
    channel = interaction.channel
    guild = interaction.guild
    if (
        guild is None
        or guild.default_role is None
        or guild.get_channel_or_thread(getattr(channel, "id", 0)) is None
    ):
        return None
    if isinstance(channel, discord.abc.GuildChannel | discord.Thread):
        return tool_context(channel, interaction.user)
    return None
