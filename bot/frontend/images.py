"""Images from Discord: the image attachments of a question, checked and downloaded; the choice
of what a turn may send (a model that reads only text gets none); and the images of history
fetched again for a later request.

Discord's attachment URLs are signed and expire after about a day, so history keeps only the
channel, message and attachment ids; a later request fetches the message again through the
REST API (which answers with fresh URLs) and downloads the attachment from there.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence

import aiohttp
import discord
from redis.exceptions import RedisError

from bot.core.images import (
    ImageError,
    ImageRef,
    ImageSource,
    PreloadedImages,
    count_refusal,
    display_name,
    image_refusal,
    is_image_attachment,
    model_refusal,
    size_refusal,
    sniff_image_type,
)
from bot.core.keys import ConversationKey
from bot.core.models import ModelCatalog
from bot.core.prefs import Preferences

log = logging.getLogger(__name__)

FETCH_CONCURRENCY = 4
"""Most images of history fetched from Discord at once (message GETs and downloads)."""


def image_attachments(attachments: Sequence[discord.Attachment]) -> list[discord.Attachment]:
    """The attachments meant as images, accepted or not; the others are read as text or left."""
    return [a for a in attachments if is_image_attachment(a.filename, a.content_type)]


async def read_images(
    attachments: Sequence[discord.Attachment],
    *,
    channel_id: int,
    message_id: int | None,
    max_bytes: int,
) -> dict[ImageRef, bytes]:
    """The checked bytes of a question's images by reference; ImageError with the first refusal.

    Counts and sizes are checked before anything is downloaded. `message_id` is None for an
    image that belongs to no message (a slash command's option): it cannot be fetched again.
    """
    refusal = count_refusal(len(attachments)) or next(
        (r for a in attachments if (r := size_refusal(a.filename, a.size, max_bytes=max_bytes))),
        None,
    )
    if refusal:
        raise ImageError(refusal)
    downloads = await asyncio.gather(*(_download(a) for a in attachments))
    loaded: dict[ImageRef, bytes] = {}
    for attachment, data in zip(attachments, downloads, strict=True):
        if data is None:
            name = display_name(attachment.filename)
            raise ImageError(f"The image {name} could not be downloaded; please send it again.")
        refusal = image_refusal(data, attachment.filename, max_bytes=max_bytes)
        if refusal:
            raise ImageError(refusal)
        ref = ImageRef(
            channel=str(channel_id),
            message="" if message_id is None else str(message_id),
            attachment=str(attachment.id),
            filename=attachment.filename,
            content_type=sniff_image_type(data) or "",
        )
        loaded[ref] = data
    return loaded


async def _download(attachment: discord.Attachment) -> bytes | None:
    """An attachment's bytes, or None when Discord would not give them (logged)."""
    try:
        return await attachment.read()
    except (discord.HTTPException, aiohttp.ClientError) as exc:
        log.warning("Could not download image %s: %s", attachment.id, exc)
        return None


class DiscordImageSource:
    """An ImageSource over Discord: fetches the message again for fresh signed URLs, finds the
    attachment by id and downloads it; a message or attachment that is gone gives None."""

    def __init__(
        self,
        channel: Callable[[int], discord.abc.Messageable],
        *,
        max_bytes: int,
        concurrency: int = FETCH_CONCURRENCY,
    ) -> None:
        self._channel = channel
        self._max_bytes = max_bytes
        self._slots = asyncio.Semaphore(concurrency)

    async def fetch(self, ref: ImageRef) -> bytes | None:
        """The image's checked bytes, or None when it can no longer be had."""
        if not (ref.channel.isdigit() and ref.message.isdigit()):
            return None  # a slash command's image belongs to no message
        async with self._slots:
            attachment = await self._attachment(ref)
            if attachment is None:
                return None
            if size_refusal(attachment.filename, attachment.size, max_bytes=self._max_bytes):
                return None
            data = await _download(attachment)
        if data is None or image_refusal(data, ref.filename, max_bytes=self._max_bytes):
            return None
        return data

    async def _attachment(self, ref: ImageRef) -> discord.Attachment | None:
        """The referenced attachment with a fresh URL; None when its message or it is gone."""
        channel = self._channel(int(ref.channel))
        try:
            message = await channel.fetch_message(int(ref.message))
        except (discord.NotFound, discord.Forbidden):
            return None
        except (discord.HTTPException, aiohttp.ClientError) as exc:
            log.warning("Could not fetch message %s for an image: %s", ref.message, exc)
            return None
        return next((a for a in message.attachments if str(a.id) == ref.attachment), None)


class TurnImages:
    """Decides what images a turn may send: a model known to read only text is refused a
    question with images, and sends the images of history as placeholders."""

    def __init__(self, prefs: Preferences, catalog: ModelCatalog, history: ImageSource) -> None:
        self._prefs = prefs
        self._catalog = catalog
        self._history = history

    async def refusal(self, key: ConversationKey) -> str | None:
        """The one-line reply to images asked about where the model reads only text, naming
        one that does; None when the model reads images or that is not known."""
        model = await self._text_only_model(key)
        if model is None:
            return None
        return model_refusal(model, await self._catalog.image_models(), pick_with="/model")

    async def source(
        self, key: ConversationKey, loaded: Mapping[ImageRef, bytes]
    ) -> ImageSource | None:
        """The image source of a turn whose question brought `loaded`: None for a model that
        reads only text (ImageError with its refusal when `loaded` is not empty)."""
        if await self._text_only_model(key) is None:
            return PreloadedImages(loaded, self._history)
        refusal = await self.refusal(key) if loaded else None
        if refusal:
            raise ImageError(refusal)
        return None

    async def _text_only_model(self, key: ConversationKey) -> str | None:
        """The conversation's model when it is known to read only text, else None."""
        try:
            model = (await self._prefs.effective(key))["model"].value
        except RedisError:
            return None  # the turn itself will say that the store is down
        return model if await self._catalog.takes_images(model) is False else None
