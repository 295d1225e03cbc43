"""Images: which bytes are accepted, each refusal's sentence, placeholders, data URLs, the limit."""

from __future__ import annotations

import asyncio
import base64

import pytest

from bot.core.images import (
    MAX_IMAGES_PER_MESSAGE,
    ImageRef,
    PreloadedImages,
    count_refusal,
    data_url,
    display_name,
    format_bytes,
    image_parts,
    image_refusal,
    is_image_attachment,
    model_refusal,
    placeholder,
    resolve_images,
    size_refusal,
    sniff_image_type,
)
from tests.support import image_bytes

MB = 1024 * 1024


def ref(n: int, filename: str = "") -> ImageRef:
    """The reference to attachment `n` of message `n` in channel 1."""
    return ImageRef("1", str(n), str(n), filename or f"pic{n}.png", "image/png")


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (image_bytes.png(), "image/png"),
        (image_bytes.jpeg(), "image/jpeg"),
        (image_bytes.gif(), "image/gif"),
        (image_bytes.gif(loop=True), "image/gif"),
        (image_bytes.webp(), "image/webp"),
        (image_bytes.webp(extended=True), "image/webp"),
    ],
)
def test_still_images_of_the_four_types_are_accepted(data: bytes, kind: str) -> None:
    """PNG, JPEG, a one-frame GIF (even with a looping block) and a still WebP pass."""
    assert sniff_image_type(data) == kind
    assert image_refusal(data, "x", max_bytes=MB) is None


@pytest.mark.parametrize(
    ("data", "filename", "expected"),
    [
        (image_bytes.gif(frames=2), "dance.gif", "The image dance.gif is animated;"),
        (image_bytes.gif(frames=3, loop=True), "a.gif", "The image a.gif is animated;"),
        (image_bytes.png(animated=True), "spin.png", "The image spin.png is animated;"),
        (image_bytes.webp(animated=True), "w.webp", "The image w.webp is animated;"),
        (b"BM" + b"\x00" * 60, "old.bmp", "The file old.bmp is not an image the bot can read;"),
        (b"hello, world", "notes.png", "The file notes.png is not an image the bot can read;"),
        (b"", "empty.png", "The file empty.png is not an image the bot can read;"),
        (image_bytes.gif()[:20], "cut.gif", "The image cut.gif is damaged or cut short;"),
        (image_bytes.png()[:8], "cut.png", "The image cut.png is damaged or cut short;"),
        (image_bytes.webp()[:12], "cut.webp", "The image cut.webp is damaged or cut short;"),
        (image_bytes.png() + b"\x00" * MB, "big.png", "The image big.png is 1 MB; the limit is"),
    ],
)
def test_each_refusal_is_one_sentence_naming_the_file(
    data: bytes, filename: str, expected: str
) -> None:
    """Animated, unknown, damaged and oversized images get one sentence that names them."""
    refusal = image_refusal(data, filename, max_bytes=MB)
    assert refusal is not None
    assert refusal.startswith(expected)
    assert "\n" not in refusal
    assert refusal.endswith(".")
    assert refusal.count(". ") == 0


def test_the_size_limit_is_inclusive_and_checkable_before_downloading() -> None:
    """Exactly the limit passes; one byte more is refused, from the size alone."""
    assert size_refusal("a.png", 8 * MB, max_bytes=8 * MB) is None
    assert size_refusal("a.png", 8 * MB + 1, max_bytes=8 * MB) == (
        "The image a.png is 8 MB; the limit is 8 MB."
    )
    assert size_refusal("a.png", 12 * MB, max_bytes=8 * MB) == (
        "The image a.png is 12 MB; the limit is 8 MB."
    )


def test_at_most_four_images_per_message() -> None:
    """Four images are fine; a fifth gets a sentence with both numbers."""
    assert MAX_IMAGES_PER_MESSAGE == 4
    assert count_refusal(4) is None
    assert count_refusal(0) is None
    assert count_refusal(5) == "That message has 5 images; the limit is 4 per message."


@pytest.mark.parametrize(
    ("size", "text"),
    [(100, "1 KB"), (300 * 1024, "300 KB"), (8 * MB, "8 MB"), (int(9.5 * MB), "9.5 MB")],
)
def test_byte_counts_read_naturally(size: int, text: str) -> None:
    """Sizes in refusals read as KB or MB without needless decimals."""
    assert format_bytes(size) == text


def test_file_names_in_sentences_stay_on_one_line() -> None:
    """A name with line breaks, backticks or great length is folded, cleaned and capped."""
    assert display_name("a\nb`c.png") == "a b'c.png"
    assert display_name("") == "image"
    assert len(display_name("x" * 500)) == 80


@pytest.mark.parametrize(
    ("filename", "content_type", "expected"),
    [
        ("cat.png", "image/png", True),
        ("CAT.JPG", None, True),
        ("scan.bmp", None, True),
        ("photo", "image/heic", True),
        ("message.txt", "text/plain; charset=utf-8", False),
        ("archive.zip", None, False),
    ],
)
def test_image_attachments_are_told_apart_from_others(
    filename: str, content_type: str | None, expected: bool
) -> None:
    """An attachment is an image by its content type or its name; text files are not."""
    assert is_image_attachment(filename, content_type) is expected


def test_a_data_url_is_the_same_for_the_same_bytes() -> None:
    """The data URL carries the sniffed type and the exact bytes, identical every time."""
    data = image_bytes.png(shade=7)
    url = data_url(data)
    assert url == data_url(bytes(data))
    assert url is not None
    prefix, _, encoded = url.partition(",")
    assert prefix == "data:image/png;base64"
    assert base64.b64decode(encoded) == data
    assert data_url(b"not an image") is None


def test_placeholders_say_whether_the_image_is_gone() -> None:
    """An older image is `[image: name]`; one that cannot be fetched says so."""
    assert placeholder(ref(1, "cat.png"), available=True) == "[image: cat.png]"
    assert placeholder(ref(1, "cat.png"), available=False) == (
        "[image: cat.png, no longer available]"
    )


class DictSource:
    """An ImageSource over a dict, counting what it was asked for."""

    def __init__(self, images: dict[ImageRef, bytes]) -> None:
        self.images = images
        self.asked: list[ImageRef] = []

    async def fetch(self, ref: ImageRef) -> bytes | None:
        """The bytes of `ref`, or None."""
        self.asked.append(ref)
        return self.images.get(ref)


async def test_only_the_newest_images_are_fetched() -> None:
    """With a limit of 3 of 5 images, the newest three are fetched; a missing one maps to None."""
    refs = [ref(n) for n in range(5)]
    source = DictSource({r: image_bytes.png(shade=i) for i, r in enumerate(refs) if i != 3})
    urls = await resolve_images(refs, source, limit=3)
    assert sorted(source.asked, key=lambda r: r.message) == refs[2:]
    assert urls == {
        refs[2]: data_url(image_bytes.png(shade=2)),
        refs[3]: None,
        refs[4]: data_url(image_bytes.png(shade=4)),
    }


class BrokenSource:
    """An ImageSource whose first image fails and whose second never arrives."""

    async def fetch(self, ref: ImageRef) -> bytes | None:
        """Raise for message 1; wait forever for any other."""
        if ref.message == "1":
            raise OSError("connection reset")
        await asyncio.Event().wait()
        return None


async def test_a_failing_or_hanging_fetch_costs_only_its_image() -> None:
    """An image whose fetch raises or outlasts the timeout is unavailable; the turn goes on."""
    refs = [ref(1), ref(2)]
    assert await resolve_images(refs, BrokenSource(), limit=3, fetch_seconds=0.01) == {
        refs[0]: None,
        refs[1]: None,
    }


async def test_no_source_or_a_zero_limit_fetches_nothing() -> None:
    """Without a source, or with IMAGE_HISTORY=0, every image stays a placeholder."""
    refs = [ref(1)]
    source = DictSource({refs[0]: image_bytes.png()})
    assert await resolve_images(refs, None, limit=3) == {}
    assert await resolve_images(refs, source, limit=0) == {}
    assert source.asked == []


async def test_preloaded_bytes_are_used_before_the_fallback() -> None:
    """The message being answered is not downloaded twice; older ones go to the fallback."""
    new, old = ref(2), ref(1)
    fallback = DictSource({old: image_bytes.gif()})
    source = PreloadedImages({new: image_bytes.png()}, fallback)
    assert await source.fetch(new) == image_bytes.png()
    assert await source.fetch(old) == image_bytes.gif()
    assert fallback.asked == [old]
    assert await PreloadedImages({}).fetch(old) is None


def test_image_parts_keep_order_and_mark_each_image() -> None:
    """Sent images become input_image parts with detail auto; the others, placeholders."""
    sent, gone, older = ref(3, "c.png"), ref(2, "b.png"), ref(1, "a.png")
    urls: dict[ImageRef, str | None] = {sent: "data:image/png;base64,AA==", gone: None}
    assert image_parts([older, gone, sent], urls) == [
        {"type": "input_text", "text": "[image: a.png]"},
        {"type": "input_text", "text": "[image: b.png, no longer available]"},
        {"type": "input_image", "image_url": "data:image/png;base64,AA==", "detail": "auto"},
    ]


@pytest.mark.parametrize(
    ("image_models", "expected"),
    [
        (
            ["z/vision", "google/gemini-2.5-flash", "openai/gpt-4o-mini"],
            "The model x/text does not read images; openai/gpt-4o-mini does (pick it with /model).",
        ),
        (
            ["z/vision", "a/vision"],
            "The model x/text does not read images; a/vision does (pick it with /model).",
        ),
        ([], "The model x/text does not read images; pick one that does with /model."),
    ],
)
def test_a_text_only_model_is_refused_naming_one_that_reads_images(
    image_models: list[str], expected: str
) -> None:
    """The refusal names a preferred image model, else any listed one, else says how to pick."""
    assert model_refusal("x/text", image_models, pick_with="/model") == expected
