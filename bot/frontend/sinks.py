"""Message sinks: where the renderer's sends and edits go in Discord.

A channel sink answers a message (mentions, thread follow-ups); an interaction sink answers a
slash command through its deferred response and, once Discord's 15-minute token expires or
Discord rejects it earlier, carries on in ordinary channel messages (or, for a private answer,
ends with a notice while the token still works). Every edit sends SUPPRESS_EMBEDS again, so the
link previews hidden when a message was sent stay hidden.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, NoReturn, Protocol

import discord
from discord.http import MultipartParameters, handle_message_parameters
from discord.utils import MISSING
from discord.webhook.async_ import async_context

from bot.core.renderer import (
    DEFAULT_LIMIT,
    STREAMING_MARKER,
    MessageGone,
    Rerouted,
    SentMessage,
    SinkError,
)

log = logging.getLogger(__name__)

TOKEN_LIFETIME = timedelta(minutes=15)
TOKEN_MARGIN = timedelta(seconds=30)
# discord.py leaves allowed_mentions out of an edit without content, and Discord then applies its
# defaults (everyone, roles, users), so a buttons-only edit must say "no pings" itself.
NO_PINGS = discord.AllowedMentions.none()
# Where an interaction's messages can also be edited through the channel route.
MESSAGE_CHANNELS = (discord.TextChannel, discord.Thread, discord.VoiceChannel, discord.StageChannel)
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


def rejects_token(exc: discord.HTTPException) -> bool:
    """Whether Discord refused an interaction token itself (expired early, revoked or unknown).

    Interaction webhooks need no Authorization header, so any 401 there is about the token."""
    return exc.status == 401 or (exc.status == 404 and exc.code == 10015)


def edit_parameters(
    previous: discord.AllowedMentions | None, *, content: Any, view: Any
) -> MultipartParameters:
    """An edit's body: new content and/or buttons, no pings, and SUPPRESS_EMBEDS sent again.

    discord.py 2.7's Message.edit sends the message's flags with SUPPRESS_EMBEDS cleared unless
    told `suppress=True`; PartialMessage.edit and the interaction-webhook edits cannot send
    flags at all. Discord accepts `flags` on all of these edits (only SUPPRESS_EMBEDS can change).
    """
    return handle_message_parameters(
        content=content,
        view=view,
        flags=discord.MessageFlags(suppress_embeds=True),
        allowed_mentions=NO_PINGS,
        previous_allowed_mentions=previous,
    )


def _keep_view(state: Any, view: Any, message_id: int) -> None:
    """Let discord.py dispatch presses of a view set by an edit, as its own edit methods do."""
    if view and not view.is_finished() and view.is_dispatchable():
        state.store_view(view, message_id)


async def edit_in_channel(
    message: discord.Message | discord.PartialMessage,
    *,
    content: Any = MISSING,
    view: Any = MISSING,
) -> discord.Message:
    """Edit one of the bot's messages through its channel, link previews kept hidden."""
    state = message._state
    if view is not MISSING:
        state.prevent_view_updates_for(message.id)
    with edit_parameters(state.allowed_mentions, content=content, view=view) as params:
        data = await state.http.edit_message(message.channel.id, message.id, params=params)
    _keep_view(state, view, message.id)
    return discord.Message(state=state, channel=message.channel, data=data)


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
            self.messages[message.id] = await edit_in_channel(
                self.messages[message.id], content=content
            )
        except discord.HTTPException as exc:
            raise _translate(exc, "editing a message", self.where) from exc

    async def set_view(self, message: SentMessage, view: discord.ui.View | None) -> None:
        """Replace a part's buttons."""
        try:
            self.messages[message.id] = await edit_in_channel(self.messages[message.id], view=view)
        except discord.HTTPException as exc:
            raise _translate(exc, "changing buttons", self.where) from exc


class InteractionSink:
    """Answers a deferred slash command; falls back to channel messages once the token is gone.

    The token is gone 30 s before Discord's 15 minutes by the bot's clock, or at once when
    Discord rejects it earlier (clock skew, a late gateway event, a proxy): then no request uses
    it again, a public answer's messages are reached through the channel (the refused request
    is repeated there, see `Rerouted`), and a private answer ends.
    """

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
        self.token_bucket = f"interaction:{interaction.id}"
        channel_id = interaction.channel_id or 0
        self.where = describe_channel(interaction.channel, channel_id)
        self.channel_bucket = f"channel:{channel_id}"
        self.rejected = False

    @property
    def expired(self) -> bool:
        """Whether the interaction token is gone: rejected by Discord, or (nearly) 15 min old."""
        return self.rejected or (
            self.now() >= self.interaction.created_at + TOKEN_LIFETIME - TOKEN_MARGIN
        )

    @property
    def send_bucket(self) -> str:
        """Sends go through the token until it is gone, then to the channel."""
        return self.channel_bucket if self.expired else self.token_bucket

    async def typing(self) -> None:
        """Nothing: the deferred response already shows "thinking…"."""

    async def send(self, content: str, *, first: bool) -> SentMessage:
        """The first part fills the deferred response; later parts are follow-ups."""
        if self.expired:
            return await self._send_in_channel(content, first=first)
        try:
            if first:
                view = self.first_view if self.first_view is not None else MISSING
                message_id = await self._edit_through_token(None, content=content, view=view)
                self.original_id = str(message_id)
            else:
                message = await self.interaction.followup.send(
                    content,
                    wait=True,
                    silent=True,
                    ephemeral=self.private,
                    suppress_embeds=True,
                )
                message_id = message.id
        except discord.HTTPException as exc:
            raise self.failure(exc, "answering the command") from exc
        return SentMessage(id=str(message_id), bucket=self.token_bucket)

    async def _send_in_channel(self, content: str, *, first: bool) -> SentMessage:
        """Once the token is gone a public answer continues as a channel message."""
        channel = self.interaction.channel
        if self.private or not isinstance(channel, discord.abc.Messageable):
            raise MessageGone("interaction token gone")
        kwargs: dict[str, Any] = {"silent": True, "suppress_embeds": True}
        if first and self.first_view is not None:
            kwargs["view"] = self.first_view
        try:
            message = await channel.send(content, **kwargs)
        except discord.HTTPException as exc:
            raise _translate(exc, "sending a message", self.where) from exc
        return SentMessage(id=str(message.id), bucket=self.channel_bucket)

    async def edit(self, message: SentMessage, content: str) -> None:
        """Edit through the token while it lives, then through the channel (public only)."""
        if message.bucket == self.channel_bucket:
            await self._edit_in_channel(message, "editing the answer", content=content)
            return
        if self.expired:
            await self._leave_token(message, content)
        try:
            await self._edit_through_token(message.id, content=content)
        except discord.HTTPException as exc:
            raise self.failure(exc, "editing the answer") from exc

    async def set_view(self, message: SentMessage, view: discord.ui.View | None) -> None:
        """Replace the buttons of one of the answer's messages."""
        if message.bucket == self.channel_bucket or (self.expired and not self.private):
            await self._edit_in_channel(message, "changing buttons", view=view)
            return
        try:
            await self._edit_through_token(message.id, view=view)
        except discord.HTTPException as exc:
            failure = self.failure(exc, "changing buttons")
            if not isinstance(failure, Rerouted):
                raise failure from exc
            # Not repeated by a renderer: this one request goes to the channel unpaced.
            await self._edit_in_channel(message, "changing buttons", view=view)

    def failure(self, exc: discord.HTTPException, what: str) -> Exception:
        """The renderer's exception for a Discord error of a token request.

        A rejected token is given up at once and for good (one warning line says why): a public
        answer is rerouted to the channel, a private one is over."""
        if not rejects_token(exc):
            return _translate(exc, what, self.where)
        self.rejected = True
        age = (self.now() - self.interaction.created_at).total_seconds()
        outcome = "the private answer ends here" if self.private else "continuing in the channel"
        log.warning(
            "Discord rejected the interaction token of an answer in %s after %.0f s, while %s "
            "(%s %s: %s); %s.",
            self.where,
            age,
            what,
            exc.status,
            exc.code,
            exc.text,
            outcome,
        )
        if self.private:
            return MessageGone("interaction token rejected")
        return Rerouted("interaction token rejected", self.token_bucket, self.channel_bucket)

    async def _leave_token(self, message: SentMessage, content: str) -> NoReturn:
        """The token ran out: a public answer moves to the channel; a private one ends with a
        cut notice while the token still works."""
        if not self.private:
            raise Rerouted("interaction token expired", self.token_bucket, self.channel_bucket)
        if not self.rejected:
            try:
                await self._end_private(message, content)
            except discord.HTTPException as exc:
                raise self.failure(exc, "ending the private answer") from exc
        raise MessageGone("private answer cut at the interaction token's lifetime")

    async def _end_private(self, message: SentMessage, content: str) -> None:
        """Show the text so far (no streaming marker) with the cut notice."""
        text = content.removesuffix(STREAMING_MARKER).rstrip()
        notice_apart = len(text) + len(PRIVATE_CUT_NOTICE) > DEFAULT_LIMIT
        final = text if notice_apart else text + PRIVATE_CUT_NOTICE
        await self._edit_through_token(message.id, content=final)
        if notice_apart:
            await self.interaction.followup.send(
                PRIVATE_CUT_NOTICE.strip(), ephemeral=True, silent=True
            )

    async def _edit_through_token(
        self, message_id: str | None, *, content: Any = MISSING, view: Any = MISSING
    ) -> int:
        """Edit the original response (or a follow-up) through the token; its message id."""
        hook = self.interaction.followup
        assert hook.token is not None
        state = self.interaction._state
        adapter = async_context.get()
        with edit_parameters(state.allowed_mentions, content=content, view=view) as params:
            common: dict[str, Any] = {
                "session": hook.session,
                "proxy": hook.proxy,
                "proxy_auth": hook.proxy_auth,
                "payload": params.payload,
                "multipart": params.multipart,
                "files": params.files,
            }
            if message_id is None or message_id == self.original_id:
                data = await adapter.edit_original_interaction_response(
                    hook.id, hook.token, **common
                )
            else:
                data = await adapter.edit_webhook_message(
                    hook.id, hook.token, int(message_id), with_components=bool(view), **common
                )
        edited = int(data["id"])
        _keep_view(state, view, edited)
        return edited

    async def _edit_in_channel(self, message: SentMessage, what: str, **change: Any) -> None:
        """Edit one of the answer's messages through the channel (public answers only)."""
        channel = self.interaction.channel
        if self.private or not isinstance(channel, MESSAGE_CHANNELS):
            raise MessageGone("no channel to continue in")
        try:
            await edit_in_channel(channel.get_partial_message(int(message.id)), **change)
        except discord.HTTPException as exc:
            raise _translate(exc, what, self.where) from exc
