"""A 60-second stream under Discord's real per-channel edit limit: no 429, the exact final text."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.e2e.stack import BotStack, answer, running_stack

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

DELTAS = 240
PACE = 0.25  # 240 tokens, one every quarter second: a 60-second answer


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotStack]:
    """The bot against an emulator that answers 429 past 5 creates+edits per 5 s per channel."""
    workdir = Path(tmp_path_factory.mktemp("ratelimited"))
    async with running_stack(workdir, channels=2, enforce_rate_limits=True) as running:
        yield running


async def test_long_stream_under_the_edit_limit(stack: BotStack) -> None:
    """60 s of tokens over three messages: paced edits, no 429, exactly the model's text."""
    channel = stack.fresh_channel()
    deltas = [f"token{n:03d} is here. " for n in range(DELTAS)]
    stack.script(answer(deltas, pace=PACE))
    await stack.emu.inject_message(channel.id, "alice", f"{stack.emu.bot_user.mention} go on")
    replies = await stack.wait_for_final(channel.id, timeout=120)
    assert stack.emu.served_429 == 0
    assert len(replies) == 3  # about 4,300 characters
    assert all(len(reply.content) <= 2000 for reply in replies)
    assert " ".join(r.content for r in replies).split() == "".join(deltas).split()
    assert sum(len(reply.history) for reply in replies) >= 40
