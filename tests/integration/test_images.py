"""Images in requests: real ConversationService, HistoryStore and FileImageSource against the
local Responses server and the test redis; request bodies are read as the server got them."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from bot.core.conversation import ConversationService, TurnRequest, TurnResult
from bot.core.events import HistoryItem
from bot.core.history import HistoryStore
from bot.core.images import FileImageSource, ImageRef, ImageSource, file_image_ref
from bot.core.keys import ConversationKey
from bot.core.responses import ResponsesClient
from bot.core.turnlock import TurnLock
from tests.support import image_bytes
from tests.support.fake_responses import FakeResponsesServer, SseStream, sse_stream
from tests.support.request_bytes import extension_pattern

KEY = ConversationKey("800", "801")
MAX_BYTES = 64 * 1024


@pytest.fixture
async def server() -> AsyncIterator[FakeResponsesServer]:
    """A scripted Responses API on 127.0.0.1."""
    async with FakeResponsesServer() as fake:
        yield fake


@asynccontextmanager
async def running(
    server: FakeResponsesServer, redis: aioredis.Redis, *, image_history: int = 3
) -> AsyncIterator[ConversationService]:
    """The conversation service as the bot wires it, with IMAGE_HISTORY=`image_history`."""
    async with aiohttp.ClientSession() as session:
        client = ResponsesClient(session, base_url=server.url, api_key="sk-or-images-test")
        store = HistoryStore(redis, max_items=40, max_chars=40_000, ttl_seconds=600)
        yield ConversationService(
            client, store, TurnLock(redis), max_output_tokens=256, image_history=image_history
        )


def image_file(tmp_path: Path, name: str, data: bytes) -> ImageRef:
    """Write an image file and return its reference, as `ask --image` makes it."""
    path = tmp_path / name
    path.write_bytes(data)
    return file_image_ref(path, data)


async def ask(
    service: ConversationService,
    server: FakeResponsesServer,
    text: str,
    *images: ImageRef,
    source: ImageSource | None = None,
    speaker: str = "Ann",
) -> TurnResult:
    """One turn saying `text` with `images`, answered "Seen."; the terminal's file source
    fetches images unless another `source` is given."""
    server.push(SseStream([sse_stream(["Seen."], message_id=f"msg_{len(server.requests)}")]))
    item = HistoryItem(role="user", text=text, speaker=speaker, images=images)
    turn = TurnRequest(
        key=KEY,
        new_items=[item],
        user_key="test:ann",
        model="test/vision",
        instructions="Look closely.",
        images=source if source is not None else FileImageSource(max_bytes=MAX_BYTES),
    )
    return await service.run_turn(turn, lambda _event: None)


def url_of(data: bytes, kind: str = "image/png") -> str:
    """The data URL the request must carry for these bytes."""
    return f"data:{kind};base64,{base64.b64encode(data).decode()}"


def user_contents(server: FakeResponsesServer, request: int = -1) -> list[list[dict[str, Any]]]:
    """The content arrays of the user items of a request the server got."""
    body = server.requests[request].body
    return [item["content"] for item in body["input"] if item["role"] == "user"]


async def test_an_image_goes_with_its_question_and_its_ref_is_stored(
    server: FakeResponsesServer, redis_client: aioredis.Redis, tmp_path: Path
) -> None:
    """The question's text comes first, then the image as a base64 data URL (detail auto);
    history keeps the reference, not the bytes."""
    cat = image_file(tmp_path, "cat.png", image_bytes.png(shade=9))
    async with running(server, redis_client) as service:
        result = await ask(service, server, "what is this?", cat)
    assert user_contents(server) == [
        [
            {"type": "input_text", "text": "[Ann]: what is this?"},
            {
                "type": "input_image",
                "image_url": url_of(image_bytes.png(shade=9)),
                "detail": "auto",
            },
        ]
    ]
    assert result.stored[0].images == (cat,)
    stored = await redis_client.lindex(KEY.items, 0)
    assert b"base64" not in stored
    assert b'"filename":"cat.png"' in stored


async def test_an_image_alone_is_a_question_about_it(
    server: FakeResponsesServer, redis_client: aioredis.Redis, tmp_path: Path
) -> None:
    """With no text the item is the speaker's label and the image; with no label, the image."""
    gif = image_file(tmp_path, "still.gif", image_bytes.gif())
    async with running(server, redis_client) as service:
        await ask(service, server, "", gif)
        await ask(service, server, "", gif, speaker="")
    image = {"type": "input_image", "image_url": url_of(image_bytes.gif(), "image/gif")}
    image["detail"] = "auto"
    assert user_contents(server)[-2:] == [
        [{"type": "input_text", "text": "[Ann]:"}, image],
        [image],
    ]


async def test_only_the_newest_images_are_sent(
    server: FakeResponsesServer, redis_client: aioredis.Redis, tmp_path: Path
) -> None:
    """With IMAGE_HISTORY=3, the fifth turn sends the three newest images and a placeholder
    for the oldest, counting back from the newest item."""
    pictures = [image_file(tmp_path, f"pic{n}.png", image_bytes.png(shade=n)) for n in range(4)]
    async with running(server, redis_client, image_history=3) as service:
        for n, picture in enumerate(pictures):
            await ask(service, server, f"and this? {n}", picture)
        await ask(service, server, "which was darkest?")
    contents = user_contents(server)
    assert [part["type"] for item in contents for part in item] == [
        *("input_text", "input_text"),
        *("input_text", "input_image") * 3,
        "input_text",
    ]
    assert contents[0][1] == {"type": "input_text", "text": "[image: pic0.png]"}
    sent = [part["image_url"] for item in contents for part in item if "image_url" in part]
    assert sent == [url_of(image_bytes.png(shade=n)) for n in (1, 2, 3)]


async def test_an_image_that_is_gone_or_changed_becomes_a_placeholder(
    server: FakeResponsesServer, redis_client: aioredis.Redis, tmp_path: Path
) -> None:
    """An image whose bytes can no longer be fetched (deleted, or changed since) is named as
    no longer available; the turn goes on."""
    cat = image_file(tmp_path, "cat.png", image_bytes.png())
    dog = image_file(tmp_path, "dog.png", image_bytes.png(shade=1))
    async with running(server, redis_client) as service:
        await ask(service, server, "two pets", cat, dog)
        (tmp_path / "cat.png").unlink()
        (tmp_path / "dog.png").write_bytes(image_bytes.png(shade=2))
        result = await ask(service, server, "still there?")
    assert result.outcome == "completed"
    assert user_contents(server)[0] == [
        {"type": "input_text", "text": "[Ann]: two pets"},
        {"type": "input_text", "text": "[image: cat.png, no longer available]"},
        {"type": "input_text", "text": "[image: dog.png, no longer available]"},
    ]


async def test_requests_with_an_image_in_history_extend_each_other(
    server: FakeResponsesServer, redis_client: aioredis.Redis, tmp_path: Path
) -> None:
    """While the image stays within IMAGE_HISTORY every request extends the one before byte
    for byte; an image pushed out of it breaks the prefix once."""
    cat = image_file(tmp_path, "cat.png", image_bytes.png())
    dog = image_file(tmp_path, "dog.webp", image_bytes.webp())
    bird = image_file(tmp_path, "bird.gif", image_bytes.gif())
    async with running(server, redis_client, image_history=2) as service:
        await ask(service, server, "look", cat)
        await ask(service, server, "and now?")
        await ask(service, server, "and this one", dog)
        await ask(service, server, "compare them")
        await ask(service, server, "one more", bird)
        await ask(service, server, "done")
    raw = [request.raw for request in server.requests]
    assert extension_pattern(raw) == [True, True, True, False, True]
    assert [body.count(b"input_image") for body in raw] == [1, 1, 2, 2, 2, 2]
    assert b"[image: cat.png]" in raw[4]


async def test_without_a_source_images_are_placeholders(
    server: FakeResponsesServer, redis_client: aioredis.Redis, tmp_path: Path
) -> None:
    """A turn given no way to fetch images sends each as `[image: name]`."""

    class Nothing:
        """An ImageSource that has no image."""

        async def fetch(self, ref: ImageRef) -> bytes | None:
            """Nothing, ever."""
            return None

    cat = image_file(tmp_path, "cat.png", image_bytes.png())
    async with running(server, redis_client) as service:
        await ask(service, server, "look", cat, source=Nothing())
        item = HistoryItem(role="user", text="again", images=(cat,))
        turn = TurnRequest(KEY, [item], "test:ann", "test/vision", "Look closely.")
        server.push(SseStream([sse_stream(["Seen."])]))
        await service.run_turn(turn, lambda _event: None)
    first, second = user_contents(server, 0), user_contents(server, 1)
    assert first[0][1] == {"type": "input_text", "text": "[image: cat.png, no longer available]"}
    assert second[-1][1] == {"type": "input_text", "text": "[image: cat.png]"}


async def test_the_file_source_gives_only_valid_unchanged_images(tmp_path: Path) -> None:
    """A file that grew past the limit, became another type or vanished gives None."""
    source = FileImageSource(max_bytes=MAX_BYTES)
    ok = image_file(tmp_path, "ok.png", image_bytes.png())
    assert await source.fetch(ok) == image_bytes.png()
    big = image_file(tmp_path, "big.png", image_bytes.png() + b"\x00" * MAX_BYTES)
    assert await source.fetch(big) is None
    text = image_file(tmp_path, "text.png", b"plain text")
    assert await source.fetch(text) is None
    (tmp_path / "ok.png").unlink()
    assert await source.fetch(ok) is None
