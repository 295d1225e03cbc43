"""Images sent with a question: what is accepted, how history refers to them, how they are sent.

A user item keeps `ImageRef`s, never the bytes. Each request fetches the newest `limit` images
of its history again through an `ImageSource` (the Discord layer re-fetches the message for a
fresh signed URL and downloads; the terminal reads the file) and sends them as base64 data
URLs: the same bytes give the same request text every turn, so providers' prompt caches hold.
Older images, and images that can no longer be fetched, become a short text placeholder.

Validation is pure: the type is sniffed from the magic bytes (PNG, JPEG, WebP, GIF), animated
GIF, APNG and animated WebP are refused, and so is anything over the byte limit. Every refusal
is one sentence for the person who sent the image.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

log = logging.getLogger(__name__)

MAX_IMAGES_PER_MESSAGE: Final = 4
FETCH_TIMEOUT_SECONDS: Final = 15.0
"""Longest wait for one image of history; past it the image is sent as its placeholder."""
ACCEPTED_TYPES: Final = "PNG, JPEG, WebP or a still GIF"
IMAGE_EXTENSIONS: Final[frozenset[str]] = frozenset(
    {".png", ".jpg", ".jpeg", ".jfif", ".webp", ".gif", ".apng", ".bmp", ".tif", ".tiff"}
    | {".heic", ".heif", ".avif", ".svg", ".ico"}
)
"""File name endings of images, accepted or not (a refused one gets a sentence, not silence)."""
_NAME_MAX_CHARS: Final = 80
_PNG_MAGIC: Final = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True, slots=True)
class ImageRef:
    """Where an image of a user message can be fetched again.

    From Discord: the channel, message and attachment ids (as strings). From a terminal:
    `channel` is empty, `message` is the sha256 hex digest of the file's bytes and `attachment`
    its absolute path. `filename` names it in placeholders; `content_type` is the sniffed type.
    """

    channel: str
    message: str
    attachment: str
    filename: str
    content_type: str


class ImageSource(Protocol):
    """Fetches the bytes of a referenced image, for one turn."""

    async def fetch(self, ref: ImageRef) -> bytes | None:
        """The image's validated bytes, or None when it can no longer be had."""
        ...


class PreloadedImages:
    """An ImageSource that answers from bytes already in hand, else asks `fallback`.

    The images of the message being answered were just downloaded and checked; this keeps
    them from being fetched a second time.
    """

    def __init__(
        self, preloaded: Mapping[ImageRef, bytes], fallback: ImageSource | None = None
    ) -> None:
        self._preloaded = dict(preloaded)
        self._fallback = fallback

    async def fetch(self, ref: ImageRef) -> bytes | None:
        """The preloaded bytes of `ref`, else the fallback's answer (None without one)."""
        if ref in self._preloaded:
            return self._preloaded[ref]
        if self._fallback is None:
            return None
        return await self._fallback.fetch(ref)


class FileImageSource:
    """An ImageSource over local files (the terminal): the file must still hold the same bytes."""

    def __init__(self, *, max_bytes: int) -> None:
        self.max_bytes = max_bytes

    async def fetch(self, ref: ImageRef) -> bytes | None:
        """The file's bytes when it still exists, is a valid image and is unchanged, else None."""
        try:
            data = await asyncio.to_thread(_read_capped, Path(ref.attachment), self.max_bytes)
        except OSError:
            return None
        if data is None or image_refusal(data, ref.filename, max_bytes=self.max_bytes):
            return None
        if ref.message and hashlib.sha256(data).hexdigest() != ref.message:
            return None
        return data


def _read_capped(path: Path, max_bytes: int) -> bytes | None:
    """The file's bytes, or None when it holds more than `max_bytes`."""
    with path.open("rb") as file:
        data = file.read(max_bytes + 1)
    return None if len(data) > max_bytes else data


class ImageError(ValueError):
    """An image cannot be sent; the message is one sentence for the person who sent it."""


def read_image_file(path: Path, *, max_bytes: int) -> tuple[ImageRef, bytes]:
    """A local image's reference and checked bytes; ImageError saying why it cannot be sent."""
    name = display_name(path.name)
    try:
        size = path.stat().st_size
        refusal = size_refusal(path.name, size, max_bytes=max_bytes)
        if refusal:
            raise ImageError(refusal)
        data = path.read_bytes()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ImageError(f"The image {name} could not be read: {reason}.") from None
    refusal = image_refusal(data, path.name, max_bytes=max_bytes)
    if refusal:
        raise ImageError(refusal)
    return file_image_ref(path, data), data


def file_image_ref(path: Path, data: bytes) -> ImageRef:
    """The reference to a local image file whose (validated) bytes are `data`."""
    return ImageRef(
        channel="",
        message=hashlib.sha256(data).hexdigest(),
        attachment=str(path.resolve()),
        filename=path.name,
        content_type=sniff_image_type(data) or "",
    )


# --- validation --------------------------------------------------------------------------


def display_name(filename: str) -> str:
    """A file name fit for a one-line sentence: one line, no backticks, capped."""
    name = " ".join(filename.replace("`", "'").split())
    if len(name) > _NAME_MAX_CHARS:
        name = name[: _NAME_MAX_CHARS - 1] + "…"
    return name or "image"


def format_bytes(size: int) -> str:
    """A byte count for people: `512 KB`, `8 MB`, `9.5 MB`."""
    if size < 1024 * 1024:
        return f"{max(1, round(size / 1024))} KB"
    return f"{size / (1024 * 1024):.1f}".removesuffix(".0") + " MB"


def sniff_image_type(data: bytes) -> str | None:
    """The MIME type of PNG, JPEG, WebP or GIF bytes by their magic number, else None."""
    if data.startswith(_PNG_MAGIC):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def is_image_attachment(filename: str, content_type: str | None) -> bool:
    """Whether an attachment is meant as an image (accepted or not), by its type or name."""
    if content_type and content_type.lower().startswith("image/"):
        return True
    return Path(filename.lower()).suffix in IMAGE_EXTENSIONS


def count_refusal(count: int) -> str | None:
    """The sentence refusing a message with too many images, or None when the count is fine."""
    if count <= MAX_IMAGES_PER_MESSAGE:
        return None
    return f"That message has {count} images; the limit is {MAX_IMAGES_PER_MESSAGE} per message."


def size_refusal(filename: str, size: int, *, max_bytes: int) -> str | None:
    """The sentence refusing an image over `max_bytes` (checkable before downloading), or None."""
    if size <= max_bytes:
        return None
    return (
        f"The image {display_name(filename)} is {format_bytes(size)}; "
        f"the limit is {format_bytes(max_bytes)}."
    )


def image_refusal(data: bytes, filename: str, *, max_bytes: int) -> str | None:
    """The sentence refusing these image bytes, or None when they may be sent to a model."""
    too_big = size_refusal(filename, len(data), max_bytes=max_bytes)
    if too_big:
        return too_big
    name = display_name(filename)
    kind = sniff_image_type(data)
    if kind is None:
        return f"The file {name} is not an image the bot can read; send {ACCEPTED_TYPES}."
    try:
        animated = _is_animated(kind, data)
    except ValueError:
        return f"The image {name} is damaged or cut short; send it again."
    if animated:
        return f"The image {name} is animated; send a still image ({ACCEPTED_TYPES})."
    return None


def _is_animated(kind: str, data: bytes) -> bool:
    """Whether sniffed image bytes are animated; ValueError when their structure is broken."""
    if kind == "image/gif":
        return _gif_frames(data) > 1
    if kind == "image/png":
        return _png_has_animation(data)
    if kind == "image/webp":
        return _webp_has_animation(data)
    return False


def _png_has_animation(data: bytes) -> bool:
    """Whether a PNG carries an `acTL` chunk before its image data (an APNG)."""
    position = len(_PNG_MAGIC)
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        if kind == b"acTL":
            return True
        if kind in {b"IDAT", b"IEND"}:
            return False
        position += 12 + length
    raise ValueError("PNG ended before its image data")


def _webp_has_animation(data: bytes) -> bool:
    """Whether a WebP has the animation flag of its VP8X header or an ANIM chunk."""
    position = 12
    while position + 8 <= len(data):
        kind = data[position : position + 4]
        (length,) = struct.unpack("<I", data[position + 4 : position + 8])
        if kind == b"VP8X" and position + 9 <= len(data):
            return bool(data[position + 8] & 0x02)
        if kind in {b"ANIM", b"ANMF"}:
            return True
        if kind in {b"VP8 ", b"VP8L"}:
            return False
        position += 8 + length + (length & 1)
    raise ValueError("WebP ended before its image data")


def _gif_frames(data: bytes) -> int:
    """The number of frames (image descriptors) of a GIF; ValueError when it is cut short."""
    if len(data) < 13:
        raise ValueError("GIF header cut short")
    flags = data[10]
    position = 13 + (3 * 2 ** ((flags & 0x07) + 1) if flags & 0x80 else 0)
    frames = 0
    while position < len(data):
        block = data[position]
        if block == 0x3B:  # trailer
            return frames
        if block == 0x21:  # extension: label, then sub-blocks
            position = _skip_sub_blocks(data, position + 2)
        elif block == 0x2C:  # image descriptor, optional local colour table, LZW size, data
            frames += 1
            if frames > 1:
                return frames
            if position + 10 > len(data):
                raise ValueError("GIF image descriptor cut short")
            local = data[position + 9]
            position += 10 + (3 * 2 ** ((local & 0x07) + 1) if local & 0x80 else 0)
            position = _skip_sub_blocks(data, position + 1)
        else:
            raise ValueError(f"unknown GIF block 0x{block:02x}")
    if frames == 0:
        raise ValueError("GIF has no image")
    return frames  # no trailer: tolerated once a frame was read


def _skip_sub_blocks(data: bytes, position: int) -> int:
    """The position after a chain of GIF data sub-blocks ending in a zero length."""
    while True:
        if position >= len(data):
            raise ValueError("GIF data cut short")
        size = data[position]
        position += 1 + size
        if size == 0:
            return position


# --- requests ----------------------------------------------------------------------------


def data_url(data: bytes) -> str | None:
    """The base64 data URL of image bytes (the same bytes give the same URL), None if not one."""
    kind = sniff_image_type(data)
    if kind is None:
        return None
    return f"data:{kind};base64,{base64.b64encode(data).decode('ascii')}"


def placeholder(ref: ImageRef, *, available: bool) -> str:
    """The text standing in for an image not sent: `[image: cat.png]`, or `..., no longer
    available]` when its bytes could not be fetched."""
    name = display_name(ref.filename)
    return f"[image: {name}]" if available else f"[image: {name}, no longer available]"


async def resolve_images(
    refs: Sequence[ImageRef],
    source: ImageSource | None,
    *,
    limit: int,
    fetch_seconds: float = FETCH_TIMEOUT_SECONDS,
) -> dict[ImageRef, str | None]:
    """Data URLs of the newest `limit` of `refs` (oldest first), fetched at once.

    A ref fetched but unavailable maps to None (so does one whose fetch failed or took longer
    than `fetch_seconds`: an old image never ends a turn); older refs are left out (they become the
    plain placeholder). Without a source nothing is fetched and the map is empty.
    """
    if source is None or limit <= 0:
        return {}
    newest: list[ImageRef] = []
    for ref in reversed(refs):
        if len(newest) == limit:
            break
        if ref not in newest:
            newest.append(ref)
    fetched = await asyncio.gather(*(_fetch_url(source, ref, fetch_seconds) for ref in newest))
    return dict(zip(newest, fetched, strict=True))


async def _fetch_url(source: ImageSource, ref: ImageRef, seconds: float) -> str | None:
    """The data URL of one image, or None when the source has no (valid) bytes for it."""
    try:
        async with asyncio.timeout(seconds):
            data = await source.fetch(ref)
    except Exception as exc:  # noqa: BLE001 - any failure only costs this image, logged
        log.warning("Could not fetch image %s: %s: %s", ref.filename, type(exc).__name__, exc)
        return None
    return None if data is None else data_url(data)


def image_parts(
    refs: Sequence[ImageRef], urls: Mapping[ImageRef, str | None]
) -> list[dict[str, str]]:
    """Content parts for an item's images: `input_image` when a URL is in hand, else the
    placeholder as `input_text`."""
    parts: list[dict[str, str]] = []
    for ref in refs:
        url = urls.get(ref)
        if url:
            parts.append({"type": "input_image", "image_url": url, "detail": "auto"})
        else:
            text = placeholder(ref, available=ref not in urls)
            parts.append({"type": "input_text", "text": text})
    return parts


# --- model capability --------------------------------------------------------------------

PREFERRED_IMAGE_MODELS: Final[tuple[str, ...]] = (
    "openai/gpt-4o-mini",
    "google/gemini-2.5-flash",
    "openai/gpt-4o",
    "anthropic/claude-sonnet-4",
)
"""Models suggested first, in this order, when a model without image input is asked about one."""


def model_refusal(model: str, image_models: Sequence[str], *, pick_with: str) -> str:
    """The one-line reply when `model` does not take images, naming one that does if known.

    `pick_with` says how to change the model, e.g. "/model" or "--model".
    """
    known = set(image_models)
    suggestion = next((m for m in PREFERRED_IMAGE_MODELS if m in known), None)
    if suggestion is None and image_models:
        suggestion = sorted(image_models)[0]
    if suggestion is None:
        return f"The model {model} does not read images; pick one that does with {pick_with}."
    return f"The model {model} does not read images; {suggestion} does (pick it with {pick_with})."
