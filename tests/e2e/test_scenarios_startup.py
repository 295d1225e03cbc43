"""Start-up scenarios of the real bot process: a missing privileged intent stops it clearly."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.stack import running_stack

pytestmark = pytest.mark.e2e


async def test_missing_message_content_intent_stops_with_one_line(tmp_path: Path) -> None:
    """Without the Message Content intent the bot exits 1 with exactly one stderr line."""
    async with running_stack(
        tmp_path, channels=0, message_content_enabled=False, wait_ready=False
    ) as stack:
        status = await stack.bot.wait(timeout=30)
        stderr = stack.bot.stderr_text()
        synced = bool(stack.emu.rest.command_syncs)
    assert status == 1
    [line] = stderr.strip().splitlines()
    assert "Message Content intent" in line
    assert "discord.com/developers/applications" in line
    assert synced, "the slash commands were synced before the gateway refused the intent"
