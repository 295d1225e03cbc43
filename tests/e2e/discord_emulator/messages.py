"""Creating, editing and deleting messages with Discord's validation, and dispatching the events."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from tests.e2e.discord_emulator import errors
from tests.e2e.discord_emulator.model import (
    PRIVATE_THREAD,
    SUPPRESS_EMBEDS_FLAG,
    Channel,
    Edit,
    Message,
    User,
)
from tests.e2e.discord_emulator.world import World

Dispatch = Callable[[str, Any], Awaitable[None]]

MAX_CONTENT = 2000
EMBED_LIMITS = {"title": 256, "description": 4096}
AUTO_ARCHIVE_DURATIONS = (60, 1440, 4320, 10080)
REPLY_TYPE = 19


def validate_content(body: dict[str, Any], *, has_files: bool, existing: Message | None) -> None:
    """Refuse what Discord refuses: over-long content or embeds, and an empty message."""
    content = body.get("content")
    if content is not None and len(content) > MAX_CONTENT:
        raise errors.invalid_form_body(
            ["content"], "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_CONTENT} or fewer in length."
        )
    embeds = body.get("embeds") or []
    for index, embed in enumerate(embeds):
        for key, limit in EMBED_LIMITS.items():
            if len(embed.get(key) or "") > limit:
                raise errors.invalid_form_body(
                    ["embeds", index, key],
                    "BASE_TYPE_MAX_LENGTH",
                    f"Must be {limit} or fewer in length.",
                )
    if _would_be_empty(body, has_files=has_files, existing=existing):
        raise errors.empty_message()


def _would_be_empty(body: dict[str, Any], *, has_files: bool, existing: Message | None) -> bool:
    """True when the message after this request has no text, embeds, components or files."""

    def field(name: str, current: Any) -> Any:
        return body[name] if name in body and body[name] is not None else current

    content = field("content", existing.content if existing else "") or ""
    embeds = field("embeds", existing.embeds if existing else [])
    components = field("components", existing.components if existing else [])
    attachments = field("attachments", existing.attachments if existing else [])
    others = body.get("sticker_ids") or body.get("poll")
    return not (content.strip() or embeds or components or attachments or has_files or others)


class MessageStore:
    """The emulator's message operations, shared by channel routes and interaction webhooks."""

    def __init__(self, world: World, dispatch: Dispatch) -> None:
        self.world = world
        self.dispatch = dispatch
        # Where attachment URLs point; the emulator sets its own address once it serves.
        self.attachment_base = "https://cdn.discordapp.invalid"

    def channel(self, channel_id: int) -> Channel:
        """A known channel or thread, else 404 10003."""
        channel = self.world.channels.get(channel_id)
        if channel is None:
            raise errors.unknown_channel()
        return channel

    def get(self, channel_id: int, message_id: int) -> Message:
        """A live message in that channel, else 404 10008."""
        self.channel(channel_id)
        message = self.world.messages.get(message_id)
        if message is None or message.deleted or message.channel_id != channel_id:
            raise errors.unknown_message()
        return message

    async def create(
        self,
        channel_id: int,
        body: dict[str, Any],
        author: User,
        *,
        files: list[dict[str, Any]] | None = None,
        message_type: int = 0,
        interaction_id: int | None = None,
        webhook_id: int | None = None,
        allow_empty: bool = False,
    ) -> Message:
        """Validate and store a new message, then dispatch MESSAGE_CREATE (not for ephemeral)."""
        channel = self.channel(channel_id)
        if not allow_empty:
            validate_content(body, has_files=bool(files), existing=None)
        reference, replied_to = self._reference(body.get("message_reference"))
        now = self.world.clock
        message = Message(
            id=self.world.snowflakes.next(),
            channel_id=channel.id,
            author=author,
            content=body.get("content") or "",
            created_at=now.now(),
            timestamp=now.wall(),
            type=REPLY_TYPE if reference and message_type == 0 else message_type,
            flags=int(body.get("flags") or 0),
            embeds=list(body.get("embeds") or []),
            components=list(body.get("components") or []),
            attachments=self.attachments(files or []),
            message_reference=reference,
            allowed_mentions=body.get("allowed_mentions"),
            interaction_id=interaction_id,
            webhook_id=webhook_id,
        )
        message.edits.append(Edit(message.created_at, message.content, body, message.flags))
        self.world.resolve_mentions(message, body.get("allowed_mentions"), replied_to)
        self.world.messages[message.id] = message
        self._count_in_thread(channel)
        if not message.is_ephemeral:
            await self.dispatch("MESSAGE_CREATE", self.world.message_payload(message, gateway=True))
        return message

    async def edit(
        self, message: Message, body: dict[str, Any], *, files: list[dict[str, Any]] | None = None
    ) -> Message:
        """Validate and apply an edit, keep the revision, then dispatch MESSAGE_UPDATE."""
        validate_content(body, has_files=bool(files), existing=message)
        for name in ("content", "embeds", "components"):
            if name in body and body[name] is not None:
                setattr(message, name, body[name])
        if "flags" in body and body["flags"] is not None:
            # Only SUPPRESS_EMBEDS can change by an edit; an edit without flags keeps them.
            wanted = int(body["flags"]) & SUPPRESS_EMBEDS_FLAG
            message.flags = (message.flags & ~SUPPRESS_EMBEDS_FLAG) | wanted
        if files:
            message.attachments = message.attachments + self.attachments(files)
        message.allowed_mentions = body.get("allowed_mentions")
        replied_to = self._replied_to(message)
        self.world.resolve_mentions(message, body.get("allowed_mentions"), replied_to)
        message.edited_timestamp = self.world.clock.wall()
        message.edits.append(Edit(self.world.clock.now(), message.content, body, message.flags))
        if not message.is_ephemeral:
            await self.dispatch("MESSAGE_UPDATE", self.world.message_payload(message, gateway=True))
        return message

    async def delete(self, message: Message) -> None:
        """Mark the message deleted and dispatch MESSAGE_DELETE."""
        message.deleted = True
        event = {"id": str(message.id), "channel_id": str(message.channel_id)}
        if not self.world.is_dm(message.channel_id):
            event["guild_id"] = str(self.world.guild_of(message.channel_id))
        if not message.is_ephemeral:
            await self.dispatch("MESSAGE_DELETE", event)

    def _reference(
        self, reference: dict[str, Any] | None
    ) -> tuple[dict[str, Any] | None, Message | None]:
        """Check a reply's reference: unknown targets fail unless fail_if_not_exists is false."""
        if not reference:
            return None, None
        target = self.world.messages.get(int(reference.get("message_id") or 0))
        if target is None or target.deleted:
            if reference.get("fail_if_not_exists", True):
                raise errors.invalid_form_body(
                    ["message_reference"], "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message"
                )
            return None, None
        normalised = {
            "type": 0,
            "message_id": str(target.id),
            "channel_id": str(target.channel_id),
        }
        if not self.world.is_dm(target.channel_id):
            normalised["guild_id"] = str(self.world.guild_of(target.channel_id))
        return normalised, target

    def _replied_to(self, message: Message) -> Message | None:
        """The message this one replies to, if it is a reply and the target still exists."""
        if message.message_reference is None:
            return None
        return self.world.messages.get(int(message.message_reference["message_id"]))

    def attachments(self, files: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Attachment objects for uploaded files (URLs unsigned: payloads sign them)."""
        result = []
        for upload in files:
            attachment_id = self.world.snowflakes.next()
            url = f"{self.attachment_base}/attachments/{attachment_id}/{upload['filename']}"
            result.append(
                {
                    "id": str(attachment_id),
                    "filename": upload["filename"],
                    "size": upload["size"],
                    "url": url,
                    "proxy_url": url,
                    "content_type": upload.get("content_type") or "application/octet-stream",
                }
            )
        return result

    def _count_in_thread(self, channel: Channel) -> None:
        """A message in a thread counts and unarchives it, as on Discord."""
        if channel.is_thread:
            channel.message_count += 1
            channel.archived = False

    async def create_thread(
        self,
        parent_id: int,
        body: dict[str, Any],
        owner: User,
        starter: Message | None,
        *,
        members: Sequence[User] = (),
    ) -> Channel:
        """Validate and create a thread (from a message when starter is given); type 12 in the
        body makes a private one, whose members are its owner and `members`."""
        parent = self.channel(parent_id)
        if parent.is_thread:
            raise errors.DiscordError(400, 50024, "Cannot execute action on this channel type")
        name = str(body.get("name") or "")
        if not 1 <= len(name) <= 100:
            raise errors.invalid_form_body(
                ["name"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."
            )
        duration = int(body.get("auto_archive_duration") or 1440)
        if duration not in AUTO_ARCHIVE_DURATIONS:
            raise errors.invalid_form_body(
                ["auto_archive_duration"], "BASE_TYPE_CHOICES", "Value must be one of (60, ...)."
            )
        if starter is not None and starter.thread_id is not None:
            raise errors.DiscordError(
                400, 160004, "A thread has already been created for this message"
            )
        thread = self.world.add_thread(
            parent.id,
            name,
            owner,
            thread_id=starter.id if starter else None,
            private=body.get("type") == PRIVATE_THREAD,
        )
        thread.member_ids |= {member.id for member in members if thread.type == PRIVATE_THREAD}
        thread.auto_archive_duration = duration
        if starter is not None:
            starter.thread_id = thread.id
        payload = thread.payload(thread.guild_id) | {"newly_created": True}
        await self.dispatch("THREAD_CREATE", payload)
        return thread
