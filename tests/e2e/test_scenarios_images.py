"""Scenarios of images sent to the bot (mentions, replies, /ask), against the real bot."""

from __future__ import annotations

import base64

import pytest
import pytest_asyncio

from tests.e2e.discord_emulator.model import Message
from tests.e2e.discord_emulator.world import ATTACHMENT_URL_SECONDS
from tests.e2e.stack import BotStack, answer, input_texts
from tests.support.fake_responses import RecordedRequest
from tests.support.image_bytes import gif, png

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

TEXT_ONLY = "deepseek/deepseek-chat"
MESSAGE = "/channels/{channel_id}/messages/{message_id}"


@pytest_asyncio.fixture(scope="module", loop_scope="module", autouse=True)
async def model_modalities(stack: BotStack) -> None:
    """The model list says which models read images, before the bot first asks for it."""
    stack.llm.models.append(TEXT_ONLY)
    stack.llm.modalities = {
        "openai/gpt-4o-mini": ["text", "image"],
        "anthropic/claude-3.5-sonnet": ["text", "image"],
        TEXT_ONLY: ["text"],
    }


def png_url(data: bytes) -> str:
    """The data URL the bot sends for PNG bytes."""
    return "data:image/png;base64," + base64.b64encode(data).decode()


def input_images(request: RecordedRequest) -> list[str]:
    """The image URLs of every input_image part in a recorded request, in order."""
    return [
        part["image_url"]
        for item in request.body.get("input", [])
        if isinstance(item.get("content"), list)
        for part in item["content"]
        if part.get("type") == "input_image"
    ]


async def test_image_only_mention_is_answered_and_sent_again_after_its_url_expired(
    stack: BotStack,
) -> None:
    """A mention with only a PNG is a question about it (no help text): the request carries
    the image as a data URL; a day later, when its URL has expired, a follow-up fetches the
    message again for a fresh URL and sends the same image again."""
    emu, channel = stack.emu, stack.fresh_channel()
    data = png(shade=7)
    stack.script(answer(["A grey square."]), answer(["Still grey."]))
    posted = await emu.inject_message(
        channel.id, "alice", emu.bot_user.mention, attachments=[("square.png", data)]
    )
    [reply] = await stack.wait_for_final(channel.id)
    assert reply.content == "A grey square."
    [first] = stack.requests()
    assert input_images(first) == [png_url(data)]
    emu.advance_clock(ATTACHMENT_URL_SECONDS + 60)
    await emu.inject_message(channel.id, "bob", f"{emu.bot_user.mention} which colour again?")
    await stack.wait_for_final(channel.id, count=2)
    second = stack.requests()[1]
    assert input_images(second) == [png_url(data)]
    refetched = [c for c in emu.calls("GET", MESSAGE) if c.params["message_id"] == posted["id"]]
    assert refetched
    assert refetched[-1].status == 200
    assert emu.attachment_downloads.count(int(posted["attachments"][0]["id"])) == 2


async def test_reply_to_someones_image_asks_about_it_until_it_is_deleted(stack: BotStack) -> None:
    """A mention replying to someone's picture sends that picture with the question; once
    that message is deleted it leaves the history, picture and text (privacy)."""
    emu, channel = stack.emu, stack.fresh_channel()
    stack.script(answer(["A dog."]), answer(["It was a dog."]))
    data = png(shade=200)
    posted = await emu.inject_message(
        channel.id, "alice", "my new pet", attachments=[("dog.png", data)]
    )
    await emu.inject_message(
        channel.id, "bob", f"{emu.bot_user.mention} what is this?", reply_to=int(posted["id"])
    )
    [reply] = await stack.wait_for_final(channel.id)
    first = stack.requests()[0]
    assert input_images(first) == [png_url(data)]
    assert input_texts(first)[0] == f"{stack.label('alice')}: my new pet"
    await emu.delete_message(int(posted["id"]))
    await emu.inject_message(channel.id, "alice", "what was it?", reply_to=reply.id)
    await stack.wait_for_final(channel.id, count=2)
    second = stack.requests()[1]
    assert input_images(second) == []
    assert not any("my new pet" in text or "dog.png" in text for text in input_texts(second))


async def test_a_text_only_model_refuses_an_image_in_one_line_and_keeps_nothing(
    stack: BotStack,
) -> None:
    """With a model that reads only text, a mention with an image gets one line naming a
    model that does; no request is made and nothing is stored."""
    emu, channel = stack.emu, stack.fresh_channel()
    record = await emu.inject_interaction(
        "model", {"name": TEXT_ONLY}, user="admin", channel_id=channel.id
    )
    await emu.wait_until(lambda: record.callback_type is not None)
    stack.script(answer(["Text only."]))
    await emu.inject_message(
        channel.id,
        "alice",
        f"{emu.bot_user.mention} what is this?",
        attachments=[("cat.png", png())],
    )

    def replies() -> list[Message]:
        return [m for m in emu.bot_messages(channel.id) if not m.interaction_id]

    await emu.wait_until(lambda: bool(replies()))
    [refusal] = replies()
    assert refusal.content == (
        f"The model {TEXT_ONLY} does not read images; openai/gpt-4o-mini does "
        "(pick it with /model)."
    )
    assert stack.requests() == []
    await emu.inject_message(channel.id, "alice", f"{emu.bot_user.mention} hello")
    await stack.wait_for_final(channel.id)
    [request] = stack.requests()
    assert input_texts(request) == [f"{stack.label('alice')}: hello"]


async def test_ask_with_an_image_option_sends_it_and_refuses_an_animated_one_privately(
    stack: BotStack,
) -> None:
    """/ask with an animated GIF gets a sentence only the asker sees (the channel keeps
    nothing); /ask with a PNG sends it to the model with the prompt."""
    emu, channel = stack.emu, stack.fresh_channel()
    stack.script(answer(["A chart."]))
    moving = emu.upload_attachment("moving.gif", gif(frames=2))
    refused = await emu.inject_interaction(
        "ask", {"prompt": "what is this?", "image": moving}, user="bob", channel_id=channel.id
    )

    def told() -> list[str]:
        return [m.content for m in emu.bot_messages(channel.id) if m.is_ephemeral]

    await emu.wait_until(lambda: bool(told()))
    assert told() == [
        "The image moving.gif is animated; send a still image (PNG, JPEG, WebP or a still GIF)."
    ]
    assert refused.original_message_id is not None
    assert emu.message(refused.original_message_id).deleted
    data = png(shade=90)
    chart = emu.upload_attachment("chart.png", data)
    record = await emu.inject_interaction(
        "ask", {"prompt": "what is this?", "image": chart}, user="bob", channel_id=channel.id
    )
    await stack.wait_for_final(channel.id)
    [request] = stack.requests()
    assert input_images(request) == [png_url(data)]
    assert input_texts(request)[0] == f"{stack.label('bob')}: what is this?"
    assert emu.message(record.original_message_id or 0).content == "A chart."


async def test_chat_with_an_image_then_an_image_only_message_in_the_thread(
    stack: BotStack,
) -> None:
    """/chat with an image opens the thread and sends the image; a message with only an image
    in the thread is answered with it, the command's image (which belongs to no message, so
    it cannot be fetched again) then named as no longer available."""
    emu, channel = stack.emu, stack.fresh_channel()
    stack.script(answer(["A sketch."]), answer(["A photo."]))
    sketch, photo = png(shade=1), png(shade=2)
    record = await emu.inject_interaction(
        "chat",
        {"prompt": "Look at this", "image": emu.upload_attachment("sketch.png", sketch)},
        user="alice",
        channel_id=channel.id,
    )
    await emu.wait_until(
        lambda: any(c.parent_id == channel.id for c in emu.world.channels.values())
    )
    thread = next(c for c in emu.world.channels.values() if c.parent_id == channel.id)
    await stack.wait_for_final(thread.id)
    starter = emu.message(record.original_message_id or 0)
    assert starter.content.endswith("started a conversation: Look at this")
    await emu.inject_message(thread.id, "alice", "", attachments=[("photo.png", photo)])
    await stack.wait_for_final(thread.id, count=2)
    first, second = stack.requests()
    assert input_images(first) == [png_url(sketch)]
    assert input_images(second) == [png_url(photo)]
    assert "[image: sketch.png, no longer available]" in input_texts(second)
