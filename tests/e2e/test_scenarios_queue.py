"""QUEUE_DEPTH against the real bot: with room for one waiting message, a third gets "busy"."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.e2e.stack import answer, input_texts, running_stack
from tests.support.fake_responses import Wait

pytestmark = pytest.mark.e2e


async def test_queue_depth_one_queues_one_and_turns_the_next_away(tmp_path: Path) -> None:
    """While an answer is held, a second message waits and a third is told the bot is busy."""
    async with running_stack(tmp_path, channels=1, queue_depth="1") as stack:
        emu, channel = stack.emu, stack.fresh_channel()
        mention = emu.bot_user.mention
        release = asyncio.Event()
        stack.script(answer(["First."], hold=Wait(release)), answer(["Second."]), answer(["No."]))
        first = await emu.inject_message(channel.id, "alice", f"{mention} question one")
        await emu.wait_until(lambda: len(stack.requests()) == 1)
        second = await emu.inject_message(channel.id, "bob", f"{mention} question two")
        waiting = emu.message(int(second["id"]))
        await emu.wait_until(lambda: bool(waiting.reactions))
        third = await emu.inject_message(channel.id, "alice", f"{mention} question three")
        await emu.wait_until(lambda: bool(emu.bot_messages(channel.id)))
        [busy] = emu.bot_messages(channel.id)
        assert "busy" in busy.content
        assert busy.message_reference is not None
        assert busy.message_reference["message_id"] == third["id"]
        assert len(stack.requests()) == 1
        release.set()
        replies = await stack.wait_for_final(channel.id, count=2)
        await emu.wait_until(lambda: len(waiting.reactions) == 2)
    assert [r.content for r in replies[1:]] == ["First.", "Second."]
    # Only the message that had to wait got the ⏳, and it came off when its turn came.
    assert [(action, emoji) for _, action, emoji in waiting.reactions] == [
        ("add", "⏳"),
        ("remove", "⏳"),
    ]
    assert emu.message(int(first["id"])).reactions == []
    assert emu.message(int(third["id"])).reactions == []
    _, two = stack.requests()
    assert input_texts(two) == [
        f"{stack.label('alice')}: question one",
        "First.",
        f"{stack.label('bob')}: question two",
    ]
