"""Turning Discord messages into history items: who is speaking, what they said, and whether a
message is meant for the bot at all."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

import aiohttp
import discord

from bot.core.events import HistoryItem
from bot.core.images import ImageRef
from bot.core.keys import DM_GUILD, ConversationKey

log = logging.getLogger(__name__)

TEXT_TYPES = ("text/", "application/json", "application/xml", "application/x-yaml")
TEXT_SUFFIXES = (".txt", ".md", ".py", ".json", ".csv", ".log", ".yaml", ".yml", ".toml", ".js")
MAX_SPEAKER = 64


def conversation_key(
    channel: discord.abc.GuildChannel | discord.Thread | discord.DMChannel,
) -> ConversationKey:
    """One conversation per server and channel; a thread is a channel of its own, and a direct
    message channel one of the "dm" pseudo-server."""
    if isinstance(channel, discord.DMChannel):
        return ConversationKey(DM_GUILD, str(channel.id))
    return ConversationKey(str(channel.guild.id), str(channel.id))


def can_send(channel: discord.abc.GuildChannel | discord.Thread, me: discord.Member) -> bool:
    """Whether the bot may post in the channel now (so no model call is spent in vain)."""
    perms = channel.permissions_for(me)
    if isinstance(channel, discord.Thread):
        return perms.send_messages_in_threads and not (channel.locked and not perms.manage_threads)
    return perms.send_messages


def speaker_name(author: discord.abc.User) -> str:
    """The display name as the model sees it: no newlines or brackets, so nobody can fake one."""
    name = re.sub(r"[\r\n\[\]]+", " ", author.display_name).strip()
    return name[:MAX_SPEAKER] or "someone"


def mentions_bot(message: discord.Message, me: discord.ClientUser | discord.Member) -> bool:
    """Whether the message @mentions the bot's user or its own managed role."""
    if any(user.id == me.id for user in message.mentions):
        return True
    if isinstance(me, discord.Member):
        own_roles = {role.id for role in me.roles if role.managed and role.is_bot_managed()}
        return any(role.id in own_roles for role in message.role_mentions)
    return False


def replies_to_bot(message: discord.Message, me: discord.abc.User) -> bool:
    """Whether the message is a Discord reply to one of the bot's messages."""
    ref = message.reference
    resolved = ref.resolved if ref is not None else None
    return isinstance(resolved, discord.Message) and resolved.author.id == me.id


def name_mentions(
    content: str,
    *,
    users: dict[int, str],
    roles: dict[int, str],
    channels: dict[int, str],
    drop: set[int],
) -> str:
    """Discord's <@id>, <@&id> and <#id> as @Name, @Role and #channel, so no raw id reaches
    the model; the mentions in `drop` (the bot's own user and role) are removed."""

    def named(prefix: str, names: dict[int, str], fallback: str) -> Callable[[re.Match[str]], str]:
        def replace(match: re.Match[str]) -> str:
            found = int(match[1])
            return "" if found in drop else prefix + names.get(found, fallback)

        return replace

    content = re.sub(r"<@!?(\d+)>", named("@", users, "someone"), content)
    content = re.sub(r"<@&(\d+)>", named("@", roles, "a role"), content)
    content = re.sub(r"<#(\d+)>", named("#", channels, "a channel"), content)
    return re.sub(r"[ \t]{2,}", " ", content).strip()


def readable_text(message: discord.Message, me: discord.abc.User) -> str:
    """What a message says, as the model should read it: mentions by name, none of the bot."""
    guild_me = message.guild.me if message.guild else None
    own_roles = {r.id for r in guild_me.roles if r.is_bot_managed()} if guild_me else set()
    return name_mentions(
        message.content,
        users={user.id: speaker_name(user) for user in message.mentions},
        roles={role.id: role.name for role in message.role_mentions},
        channels={
            channel.id: getattr(channel, "name", "a channel")
            for channel in message.channel_mentions
        },
        drop={me.id, *own_roles},
    )


def readable_prompt(prompt: str, guild: discord.Guild | None, me: discord.abc.User) -> str:
    """A slash command's text option as the model should read it: Discord sends mentions in
    it as raw <@id>, so they are named from what the bot knows of the server."""
    ids = {int(found) for found in re.findall(r"<(?:@[!&]?|#)(\d+)>", prompt)}
    users: dict[int, str] = {}
    roles: dict[int, str] = {}
    channels: dict[int, str] = {}
    if guild is not None:
        for found in ids:
            if (member := guild.get_member(found)) is not None:
                users[found] = speaker_name(member)
            if (role := guild.get_role(found)) is not None:
                roles[found] = role.name
            if (channel := guild.get_channel_or_thread(found)) is not None:
                channels[found] = channel.name
    return name_mentions(prompt, users=users, roles=roles, channels=channels, drop={me.id})


class AttachmentTooLargeError(Exception):
    """A text attachment far over the input limit; refused without downloading it."""

    def __init__(self, filename: str, size: int) -> None:
        super().__init__(f"{filename} is {size:,} bytes")
        self.filename = filename
        self.size = size


async def attachment_text(message: discord.Message, budget: int) -> str:
    """Text attachments (Discord turns long pastes into message.txt); none read past `budget`."""
    parts: list[str] = []
    for att in message.attachments:
        if budget <= 0:
            break
        kind = (att.content_type or "").split(";")[0]
        if not (kind.startswith(TEXT_TYPES) or att.filename.lower().endswith(TEXT_SUFFIXES)):
            continue
        if att.size > 4 * max(budget, 0) + 4:  # too long even at 4 bytes a character
            raise AttachmentTooLargeError(att.filename, att.size)
        try:
            raw = await att.read()
        except (discord.HTTPException, aiohttp.ClientError) as exc:
            log.warning("Could not read attachment %s: %s", att.filename, exc)
            continue
        text = raw.decode("utf-8", errors="replace")  # whole, so a refusal tells the true size
        parts.append(f"[{att.filename}]\n{text}")
        budget -= len(text)
    return "\n\n".join(parts)


def user_item(
    message: discord.Message, text: str, *, images: tuple[ImageRef, ...] = ()
) -> HistoryItem:
    """A user turn, labelled with the speaker's display name, with the message id and the
    author's id (never sent: it tells same-named members apart and lets them be forgotten)."""
    return HistoryItem(
        role="user",
        text=text,
        speaker=speaker_name(message.author),
        ref=str(message.id),
        author=str(message.author.id),
        images=images,
    )


def quoted_message(message: discord.Message, me: discord.abc.User) -> discord.Message | None:
    """The message the trigger replies to, when it is someone else's (the bot's is in history)."""
    ref = message.reference
    target = ref.resolved if ref is not None else None
    if not isinstance(target, discord.Message) or target.author.id == me.id:
        return None
    return target


def reply_context(
    message: discord.Message, me: discord.abc.User, *, images: tuple[ImageRef, ...] = ()
) -> HistoryItem | None:
    """The message the trigger replies to as a user item, when it is someone else's, with
    that message's `images`; None when it is the bot's or has nothing to say."""
    target = quoted_message(message, me)
    if target is None:
        return None
    text = readable_text(target, me)
    if not text and not images:
        return None
    return user_item(target, text, images=images)
