"""Interactions: injected slash commands and button presses, their callbacks and webhook routes."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from tests.e2e.discord_emulator import errors
from tests.e2e.discord_emulator.messages import MessageStore
from tests.e2e.discord_emulator.model import EPHEMERAL_FLAG, LOADING_FLAG, Message, User
from tests.e2e.discord_emulator.world import World

ACK_LIMIT_SECONDS = 3.0
TOKEN_LIFETIME_SECONDS = 15 * 60
CHAT_INPUT_COMMAND_TYPE = 20
MESSAGE_CALLBACK_TYPES = (4, 5)
TOKEN_REJECTIONS = {50027: errors.invalid_webhook_token, 10015: errors.unknown_webhook}


@dataclass
class InteractionRecord:
    """One interaction the emulator sent, and what the bot did with it."""

    id: int
    token: str
    type: int
    user: User
    channel_id: int
    created_at: float
    payload: dict[str, Any]
    callback_type: int | None = None
    acknowledged_at: float | None = None
    callback_body: dict[str, Any] | None = None
    original_message_id: int | None = None
    component_message_id: int | None = None
    followup_ids: list[int] = field(default_factory=list)
    ephemeral: bool = False
    filled: bool = False
    age: float = 0.0
    rejected_with: int | None = None
    """Set by `Interactions.reject_token`: the error code every webhook request then gets."""

    @property
    def deferred_and_unfilled(self) -> bool:
        """True while a deferred "thinking…" message waits for its first follow-up or edit."""
        return self.callback_type == 5 and self.original_message_id is not None and not self.filled


class Interactions:
    """Keeps interaction records and answers the callback and interaction-webhook routes."""

    def __init__(self, world: World, store: MessageStore) -> None:
        self.world = world
        self.store = store
        self.records: dict[int, InteractionRecord] = {}
        self.by_token: dict[str, InteractionRecord] = {}
        self.ack_limit = ACK_LIMIT_SECONDS
        self.token_lifetime = TOKEN_LIFETIME_SECONDS

    def new_record(
        self, kind: int, user: User, channel_id: int, data: dict[str, Any], *, age: float = 0.0
    ) -> InteractionRecord:
        """Create the record and the INTERACTION_CREATE payload for one injected interaction.

        With `age`, the interaction's snowflake (which clients read its creation time from) and
        its token's 15 minutes start that many seconds in the past; the 3-second acknowledgement
        deadline still counts from now.
        """
        snowflakes = self.world.snowflakes
        interaction_id = snowflakes.aged(age) if age else snowflakes.next()
        token = "aW50ZXJhY3Rpb24" + secrets.token_urlsafe(48)
        channel = self.store.channel(channel_id)
        guild_id = channel.guild_id or self.world.guild_id
        payload = {
            "id": str(interaction_id),
            "application_id": str(self.world.application_id),
            "type": kind,
            "data": data,
            "guild_id": str(guild_id),
            "guild": {"id": str(guild_id), "locale": "en-US", "features": []},
            "channel_id": str(channel.id),
            "channel": channel.payload(guild_id),
            "member": self.world.members[user.id].payload()
            | {"permissions": str(self.world.channel_permissions(user.id, channel.id))},
            "token": token,
            "version": 1,
            "app_permissions": str(self.world.channel_permissions(self.world.bot.id, channel.id)),
            "locale": "en-US",
            "guild_locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"0": str(guild_id)},
            "context": 0,
            "attachment_size_limit": 10 * 1024 * 1024,
        }
        record = InteractionRecord(
            interaction_id, token, kind, user, channel.id, self.world.clock.now(), payload, age=age
        )
        self.records[interaction_id] = record
        self.by_token[token] = record
        return record

    async def callback(
        self, interaction_id: int, token: str, body: dict[str, Any], files: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """POST /interactions/{id}/{token}/callback: acknowledge once, within the deadline."""
        record = self.records.get(interaction_id)
        if record is None or record.token != token:
            raise errors.unknown_interaction()
        if record.callback_type is not None:
            raise errors.already_acknowledged()
        if self.world.clock.now() - record.created_at > self.ack_limit:
            raise errors.unknown_interaction()
        kind = int(body.get("type", 0))
        data = body.get("data") or {}
        message = await self._apply_callback(record, kind, data, files)
        record.callback_type = kind
        record.callback_body = body
        record.acknowledged_at = self.world.clock.now()
        return self._callback_response(record, kind, message)

    async def _apply_callback(
        self,
        record: InteractionRecord,
        kind: int,
        data: dict[str, Any],
        files: list[dict[str, Any]],
    ) -> Message | None:
        """Create or update the message a callback of this type makes."""
        if kind == 4:
            record.ephemeral = bool(int(data.get("flags") or 0) & EPHEMERAL_FLAG)
            message = await self._response_message(record, data, files)
            record.filled = True
            return message
        if kind == 5:
            flags = LOADING_FLAG | (int(data.get("flags") or 0) & EPHEMERAL_FLAG)
            record.ephemeral = bool(flags & EPHEMERAL_FLAG)
            return await self._thinking_message(record, flags)
        if kind in (6, 7) and record.component_message_id is not None:
            message = self.world.messages[record.component_message_id]
            record.original_message_id = message.id
            record.filled = True
            return await self.store.edit(message, data, files=files) if kind == 7 else message
        if kind in (8, 9):
            return None
        raise errors.invalid_form_body(["type"], "BASE_TYPE_CHOICES", f"Value {kind} not allowed.")

    async def _response_message(
        self, record: InteractionRecord, data: dict[str, Any], files: list[dict[str, Any]]
    ) -> Message:
        """The message a type 4 callback posts."""
        message = await self.store.create(
            record.channel_id,
            data,
            self.world.bot,
            files=files,
            message_type=CHAT_INPUT_COMMAND_TYPE if record.type == 2 else 0,
            interaction_id=record.id,
            webhook_id=self.world.application_id,
        )
        record.original_message_id = message.id
        return message

    async def _thinking_message(self, record: InteractionRecord, flags: int) -> Message:
        """The "thinking…" placeholder a type 5 callback posts (allowed to be empty)."""
        message = await self.store.create(
            record.channel_id,
            {"content": "", "flags": flags},
            self.world.bot,
            message_type=CHAT_INPUT_COMMAND_TYPE if record.type == 2 else 0,
            interaction_id=record.id,
            webhook_id=self.world.application_id,
            allow_empty=True,
        )
        record.original_message_id = message.id
        return message

    def _callback_response(
        self, record: InteractionRecord, kind: int, message: Message | None
    ) -> dict[str, Any]:
        """The body of a callback answered `with_response`."""
        interaction: dict[str, Any] = {
            "id": str(record.id),
            "type": record.type,
            "response_message_id": str(message.id) if message else None,
            "response_message_loading": kind == 5,
            "response_message_ephemeral": record.ephemeral,
        }
        resource: dict[str, Any] = {"type": kind}
        if message is not None:
            resource["message"] = self.world.message_payload(message)
        return {"interaction": interaction, "resource": resource}

    def reject_token(self, record: InteractionRecord, *, code: int = 50027) -> None:
        """From now on Discord refuses this interaction's token, before its 15 minutes are over:
        401 50027 (Invalid Webhook Token) or, with code=10015, 404 Unknown Webhook."""
        if code not in TOKEN_REJECTIONS:
            raise ValueError(f"a token is rejected with 50027 or 10015, not {code}")
        record.rejected_with = code

    def by_webhook(self, application_id: int, token: str) -> InteractionRecord:
        """The interaction a webhook token belongs to; 404 if unknown, 401 once expired."""
        record = self.by_token.get(token)
        if record is None or application_id != self.world.application_id:
            raise errors.unknown_webhook()
        if record.rejected_with is not None:
            raise TOKEN_REJECTIONS[record.rejected_with]()
        if self.world.clock.now() - record.created_at + record.age > self.token_lifetime:
            raise errors.invalid_webhook_token()
        return record

    def original(self, record: InteractionRecord) -> Message:
        """The @original message, once the interaction was answered with a message."""
        if record.original_message_id is None:
            raise errors.unknown_message()
        message = self.world.messages[record.original_message_id]
        if message.deleted:
            raise errors.unknown_message()
        return message

    def webhook_message(self, record: InteractionRecord, message_id: int) -> Message:
        """A message sent through this interaction's webhook."""
        known = {record.original_message_id, *record.followup_ids}
        message = self.world.messages.get(message_id)
        if message is None or message.deleted or message_id not in known:
            raise errors.unknown_message()
        return message

    async def edit_message(
        self,
        record: InteractionRecord,
        message: Message,
        body: dict[str, Any],
        files: list[dict[str, Any]],
    ) -> Message:
        """PATCH through the webhook; editing the thinking message replaces the placeholder."""
        if message.flags & LOADING_FLAG:
            message.flags &= ~LOADING_FLAG
            record.filled = True
        return await self.store.edit(message, body, files=files)

    async def followup(
        self, record: InteractionRecord, body: dict[str, Any], files: list[dict[str, Any]]
    ) -> Message:
        """POST /webhooks/{app}/{token}: the first after a defer fills the thinking message."""
        if record.callback_type is None:
            raise errors.unknown_webhook()
        deferred = self.world.messages.get(record.original_message_id or 0)
        if record.deferred_and_unfilled and deferred is not None and not deferred.deleted:
            return await self.edit_message(record, deferred, body, files)
        message = await self.store.create(
            record.channel_id,
            body,
            self.world.bot,
            files=files,
            interaction_id=record.id,
            webhook_id=self.world.application_id,
        )
        record.followup_ids.append(message.id)
        return message
