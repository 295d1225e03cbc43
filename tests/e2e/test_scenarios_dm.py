"""Scenarios of direct messages, against the real bot with ALLOW_DMS and MEMORY_ENABLED: a DM
is answered in the DM, and what is told in a DM stays in that DM's memory (nor does a
server's memory reach the DM)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.e2e.conftest import assert_clean_log
from tests.e2e.stack import BotStack, answer, running_stack
from tests.e2e.test_scenarios_memory import Turns, switch

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotStack]:
    """One bot with ALLOW_DMS and MEMORY_ENABLED for this module's scenarios."""
    async with running_stack(
        tmp_path_factory.mktemp("dm"), channels=4, allow_dms="true", memory_enabled="true"
    ) as running:
        yield running
        assert_clean_log(running.bot.stderr_text())


async def test_a_direct_message_is_answered_in_the_dm(stack: BotStack) -> None:
    """Alice writes to the bot in a DM (no mention, no server): the answer is posted in that
    DM and the model's request carries her text."""
    emu = stack.emu
    dm = emu.open_dm("alice")
    stack.script(answer(["Hello, Alice, privately."]))
    sent = await emu.inject_message(dm.id, "alice", "what rhymes with orange?")
    assert "guild_id" not in sent
    [reply] = await stack.wait_for_final(dm.id)
    assert reply.content == "Hello, Alice, privately."
    [request] = stack.requests()
    assert "what rhymes with orange?" in str(request.body["input"])


async def test_facts_told_in_a_dm_and_in_a_server_never_cross(stack: BotStack) -> None:
    """A fact Bob tells in his DM is recalled in that DM only, never in a server channel
    (whoever asks); a server's fact is recalled in the server, never in the DM."""
    await switch(stack, "on")
    emu, turns = stack.emu, Turns(stack)
    dm, general = emu.open_dm("bob"), emu.channel("general")
    await turns.remember(dm, "bob", "My locker code is 4417.")
    await turns.remember(general, "alice", "The server picnic is in June.")

    assert await turns.recall(dm, "bob", "locker code picnic") == ["My locker code is 4417."]
    for who in ("bob", "alice"):
        assert await turns.recall(general, who, "locker code picnic") == [
            "The server picnic is in June."
        ]
