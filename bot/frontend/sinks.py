"""Message sinks: where the renderer's sends and edits go in Discord.

A channel sink answers a message (mentions, thread follow-ups); an interaction sink answers a
slash command through its deferred response and, once Discord's 15-minute token expires,
carries on in ordinary channel messages (or, for a private answer, ends with a notice).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

import discord

from bot.core.renderer import (
    DEFAULT_LIMIT,
    STREAMING_MARKER,
    MessageGone,
    SentMessage,
    SinkError,
)

log = logging.getLogger(__name__)

TOKEN_LIFETIME = timedelta(minutes=15)
TOKEN_MARGIN = timedelta(seconds=30)
# discord.py leaves allowed_mentions out of an edit without content, and Discord then applies its
# defaults (everyone, roles, users), so a buttons-only edit must say "no pings" itself.
NO_PINGS = discord.AllowedMentions.none()
PRIVATE_CUT_NOTICE = "\n\n-# ✂️ Cut here: Discord lets a private answer run for 15 minutes."


class ViewSink(Protocol):
    """A sink whose messages can have their buttons changed."""

    async def set_view(self, message: SentMessage, view: discord.ui.View | None) -> None:
        """Replace (or with None, remove) the buttons of one of the sink's messages."""


# Discord codes after which this answer cannot go on, with what a server owner should know.
GONE_HINTS = {
    10003: "the channel is gone",
    10008: "the message was deleted",
    50001: "the bot cannot see the channel",
    50013: "the bot lacks Send Messages (or Send Messages in Threads) there",
    50083: "the thread is archived and locked",
}


def describe_channel(channel: object, channel_id: int) -> str:
    """A channel as a log line names it: #name (id)."""
    name = getattr(channel, "name", None)
    return f"#{name} ({channel_id})" if name else f"channel {channel_id}"


def _translate(exc: discord.HTTPException, what: str, where: str) -> Exception:
    """A Discord error as the renderer's: gone (stop, logged once) or a failure (carry on)."""
    gone = isinstance(exc, discord.NotFound | discord.Forbidden) or exc.code in GONE_HINTS
    if gone:
        hint = GONE_HINTS.get(exc.code, "Discord refused it")
        log.warning(
            "Stopped an answer in %s: %s failed (%s %s: %s); %s.",
            where,
            what,
            exc.status,
            exc.code,
            exc.text,
            hint,
        )
        return MessageGone(str(exc))
    return SinkError(f"{what} in {where} failed: {exc}")


class ChannelSink:
    """Sends the answer into a channel or thread, replying to the trigger message if any."""

    def __init__(
        self,
        channel: discord.abc.Messageable,
        channel_id: int,
        *,
        trigger: discord.Message | None = None,
        mention_author: bool = True,
        first_view: discord.ui.View | None = None,
    ) -> None:
        self.channel = channel
        self.where = describe_channel(channel, channel_id)
        self.send_bucket = f"channel:{channel_id}"
        self.trigger = trigger
        self.mention_author = mention_author
        self.first_view = first_view
        self.messages: dict[str, discord.Message | discord.PartialMessage] = {}

    async def typing(self) -> None:
        """Show "typing…" for about ten seconds."""
        try:
            await self.channel.typing()
        except discord.HTTPException as exc:
            log.debug("typing failed: %s", exc)

    async def send(self, content: str, *, first: bool) -> SentMessage:
        """Post a part: the first replies to the trigger, the rest are sent silently."""
        kwargs: dict[str, Any] = {"suppress_embeds": True}
        if first and self.trigger is not None:
            kwargs["reference"] = self.trigger.to_reference(fail_if_not_exists=False)
            kwargs["mention_author"] = self.mention_author
        if first and self.first_view is not None:
            kwargs["view"] = self.first_view
        if not first:
            kwargs["silent"] = True
        try:
            message = await self.channel.send(content, **kwargs)
        except discord.HTTPException as exc:
            raise _translate(exc, "sending a message", self.where) from exc
        self.messages[str(message.id)] = message
        return SentMessage(id=str(message.id), bucket=self.send_bucket)

    async def edit(self, message: SentMessage, content: str) -> None:
        """Replace a part's text."""
        try:
            self.messages[message.id] = await self.messages[message.id].edit(content=content)
        except discord.HTTPException as exc:
            raise _translate(exc, "editing a message", self.where) from exc

    async def set_view(self, message: SentMessage, view: discord.ui.View | None) -> None:
        """Replace a part's buttons."""
        try:
            self.messages[message.id] = await self.messages[message.id].edit(
                view=view, allowed_mentions=NO_PINGS
            )
        except discord.HTTPException as exc:
            raise _translate(exc, "changing buttons", self.where) from exc


class InteractionSink:
    """Answers a deferred slash command; falls back to channel messages after 15 minutes."""

    def __init__(
        self,
        interaction: discord.Interaction,
        *,
        private: bool,
        first_view: discord.ui.View | None = None,
        now: Callable[[], datetime] = discord.utils.utcnow,
    ) -> None:
        self.interaction = interaction
        self.private = private
        self.first_view = first_view
        self.now = now
        self.original_id: str | None = None
        self.messages: dict[str, discord.Message] = {}
        self.token_bucket = f"interaction:{interaction.id}"
        channel_id = interaction.channel_id or 0
        self.where = describe_channel(interaction.channel, channel_id)
        self.channel_bucket = f"channel:{channel_id}"

    @property
    def expired(self) -> bool:
        """Whether the interaction token is (nearly) past its 15 minutes."""
        return self.now() >= self.interaction.created_at + TOKEN_LIFETIME - TOKEN_MARGIN

    @property
    def send_bucket(self) -> str:
        """Sends go through the token until it expires, then to the channel."""
        return self.channel_bucket if self.expired else self.token_bucket

    async def typing(self) -> None:
        """Nothing: the deferred response already shows "thinking…"."""

    async def send(self, content: str, *, first: bool) -> SentMessage:
        """The first part fills the deferred response; later parts are follow-ups."""
        if self.expired:
            return await self._send_expired(content)
        try:
            if first:
                kwargs: dict[str, Any] = {"content": content}
                if self.first_view is not None:
                    kwargs["view"] = self.first_view
                message: discord.Message = await self.interaction.edit_original_response(**kwargs)
                self.original_id = str(message.id)
            else:
                message = await self.interaction.followup.send(
                    content,
                    wait=True,
                    silent=True,
                    ephemeral=self.private,
                    suppress_embeds=True,
                )
        except discord.HTTPException as exc:
            raise _translate(exc, "answering the command", self.where) from exc
        self.messages[str(message.id)] = message
        return SentMessage(id=str(message.id), bucket=self.token_bucket)

    async def _send_expired(self, content: str) -> SentMessage:
        """After the token's lifetime a public answer continues as a channel message."""
        channel = self.interaction.channel
        if self.private or not isinstance(channel, discord.abc.Messageable):
            raise MessageGone("interaction token expired")
        try:
            message = await channel.send(content, silent=True, suppress_embeds=True)
        except discord.HTTPException as exc:
            raise _translate(exc, "sending a message", self.where) from exc
        self.messages[str(message.id)] = message
        return SentMessage(id=str(message.id), bucket=self.channel_bucket)

    async def edit(self, message: SentMessage, content: str) -> None:
        """Edit through the token while it lives, then through the channel (public only)."""
        try:
            if message.bucket == self.channel_bucket:
                await self.messages[message.id].edit(content=content)
            elif self.expired:
                await self._edit_after_expiry(message, content)
            elif message.id == self.original_id:
                await self.interaction.edit_original_response(content=content)
            else:
                await self.interaction.followup.edit_message(int(message.id), content=content)
        except discord.HTTPException as exc:
            raise _translate(exc, "editing the answer", self.where) from exc

    async def set_view(self, message: SentMessage, view: discord.ui.View | None) -> None:
        """Replace the buttons of one of the answer's messages."""
        try:
            if message.bucket == self.channel_bucket:
                await self.messages[message.id].edit(view=view, allowed_mentions=NO_PINGS)
            elif self.expired:
                channel = self.interaction.channel
                if isinstance(channel, discord.TextChannel | discord.Thread):
                    await channel.get_partial_message(int(message.id)).edit(
                        view=view, allowed_mentions=NO_PINGS
                    )
            elif message.id == self.original_id:
                await self.interaction.edit_original_response(view=view)
            else:
                await self.interaction.followup.edit_message(int(message.id), view=view)
        except discord.HTTPException as exc:
            raise _translate(exc, "changing buttons", self.where) from exc

    async def _edit_after_expiry(self, message: SentMessage, content: str) -> None:
        """A private answer ends with a cut notice; a public one is edited as a channel message."""
        if self.private:
            await self._end_private(message, content)
            raise MessageGone("private answer cut at the interaction token's lifetime")
        channel = self.interaction.channel
        if not isinstance(channel, discord.abc.Messageable) or not hasattr(
            channel, "get_partial_message"
        ):
            raise MessageGone("no channel to continue in")
        await channel.get_partial_message(int(message.id)).edit(content=content)

    async def _end_private(self, message: SentMessage, content: str) -> None:
        """Show the text so far (no streaming marker) with the cut notice, while the token lives."""
        text = content.removesuffix(STREAMING_MARKER).rstrip()
        notice_apart = len(text) + len(PRIVATE_CUT_NOTICE) > DEFAULT_LIMIT
        final = text if notice_apart else text + PRIVATE_CUT_NOTICE
        if message.id == self.original_id:
            await self.interaction.edit_original_response(content=final)
        else:
            await self.interaction.followup.edit_message(int(message.id), content=final)
        if notice_apart:
            await self.interaction.followup.send(
                PRIVATE_CUT_NOTICE.strip(), ephemeral=True, silent=True
            )
