"""What people take back reaches the history: deleted messages (one or in bulk) leave it, an
edited message is updated in it, and a server that removes the bot loses all its data.

The bot keeps no message cache, so only the raw events fire for most messages; each one is a
single script on the one conversation it names (see `HistoryStore.remove_messages` and
`edit_message`). An answer of the bot's that is deleted leaves the history too: the stored
answer knows every message that shows it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord.ext import commands
from redis.exceptions import RedisError

from bot.core.keys import DM_GUILD, ConversationKey
from bot.frontend import messages as m

if TYPE_CHECKING:
    from bot.frontend.client import AssistantBot

log = logging.getLogger(__name__)


class HistoryUpkeep(commands.Cog):
    """Raw message deletes and edits, and the bot's removal from a server."""

    def __init__(self, bot: AssistantBot) -> None:
        self.bot = bot

    def _key(self, guild_id: int | None, channel_id: int) -> ConversationKey | None:
        """The conversation of a channel; None for direct messages the bot does not answer."""
        if guild_id is None:
            return (
                ConversationKey(DM_GUILD, str(channel_id)) if self.bot.settings.allow_dms else None
            )
        return ConversationKey(str(guild_id), str(channel_id))

    @commands.Cog.listener()
    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        """A deleted message leaves the history (an answer's message takes the answer along)."""
        await self._remove(payload.guild_id, payload.channel_id, [payload.message_id])

    @commands.Cog.listener()
    async def on_raw_bulk_message_delete(self, payload: discord.RawBulkMessageDeleteEvent) -> None:
        """Messages deleted in bulk (a moderator's purge) leave the history."""
        await self._remove(payload.guild_id, payload.channel_id, sorted(payload.message_ids))

    async def _remove(self, guild_id: int | None, channel_id: int, ids: list[int]) -> None:
        """Take the items shown by these messages out of their conversation."""
        key = self._key(guild_id, channel_id)
        if key is None:
            return
        try:
            removed = await self.bot.core.store.remove_messages(key, [str(i) for i in ids])
        except RedisError as exc:
            log.warning("Could not remove deleted messages from %s: %s", key, exc)
            return
        if removed.total:
            log.info("Removed %d deleted message(s) from %s.", removed.total, key)

    @commands.Cog.listener()
    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        """An edited message that is in the history gets its new text there (mentions named as
        for a new message); an edit down to nothing removes it. The bot's own edits (its
        streaming answers) are skipped without touching Redis."""
        me = self.bot.user
        message = payload.message
        if me is None or message.author.id == me.id or "content" not in payload.data:
            return
        key = self._key(payload.guild_id, payload.channel_id)
        if key is None:
            return
        text = m.readable_text(message, me)
        if message.attachments:
            if not text:
                return  # only its attachments are left: the item keeps what it had
            text = await self._with_attachments(message, text)
        try:
            await self.bot.core.store.edit_message(key, str(message.id), text)
        except RedisError as exc:
            log.warning("Could not update an edited message in %s: %s", key, exc)

    async def _with_attachments(self, message: discord.Message, text: str) -> str:
        """The text followed by its text attachments, as a new message is read."""
        budget = self.bot.settings.max_input_chars - len(text)
        try:
            extra = await m.attachment_text(message, budget)
        except m.AttachmentTooLargeError:
            return text
        return f"{text}\n\n{extra}".strip() if extra else text

    @commands.Cog.listener()
    async def on_guild_remove(self, guild: discord.Guild) -> None:
        """Removed from a server (not an outage, which discord.py does not report here): its
        histories, settings, limits, access rules and usage are deleted."""
        try:
            deleted = await self.bot.data.delete_server(str(guild.id))
        except RedisError as exc:
            log.warning("Could not delete the data of server %s: %s", guild.id, exc)
            return
        log.info("Removed from server %s: deleted its %d stored keys.", guild.id, deleted)


async def setup(bot: AssistantBot) -> None:
    """Load the history upkeep."""
    await bot.add_cog(HistoryUpkeep(bot))
