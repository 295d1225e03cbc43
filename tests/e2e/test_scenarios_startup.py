"""Start-up scenarios of the real bot process: a missing privileged intent stops it clearly."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.stack import running_stack

pytestmark = pytest.mark.e2e


async def test_missing_message_content_intent_stops_with_one_line(tmp_path: Path) -> None:
    """Without the Message Content intent the bot exits 1 with one line saying where to fix it.

    Slash commands are synced (and logged at INFO) before the gateway refuses the intent, so
    only informational log records may come before that line: no warnings, no traceback.
    """
    async with running_stack(
        tmp_path, channels=0, message_content_enabled=False, wait_ready=False
    ) as stack:
        status = await stack.bot.wait(timeout=30)
        stderr = stack.bot.stderr_text()
    assert status == 1
    *before, last = stderr.strip().splitlines()
    assert "Message Content intent" in last
    assert "discord.com/developers/applications" in last
    assert all(line.startswith("INFO ") for line in before), stderr
