"""Scenarios of the shared assistant: @mentions and replies in channels, against the real bot."""

from __future__ import annotations

import pytest

from tests.e2e.stack import BotStack, answer, has_button, input_texts

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]


async def test_mention_streams_edits_and_ends_with_the_exact_text(stack: BotStack) -> None:
    """A mention gets a reply that grows by edits and ends with exactly the model's text."""
    channel = stack.fresh_channel()
    deltas = ["Hello", " there,", " Alice!", " How", " are", " you", " today?"]
    stack.script(answer(deltas, pace=0.4))
    trigger = await stack.emu.inject_message(
        channel.id, "alice", f"{stack.emu.bot_user.mention} hi"
    )
    [reply] = await stack.wait_for_final(channel.id)
    assert reply.content == "".join(deltas)
    assert len(reply.history) >= 3
    assert reply.message_reference is not None
    assert reply.message_reference["message_id"] == trigger["id"]
    assert not has_button(reply, "stop")
    [request] = stack.requests()
    assert input_texts(request)[-1].endswith("hi")
