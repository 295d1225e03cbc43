"""The BotProcess helper: it captures stderr, reports exit codes and always stops its process."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.bot_process import BotProcess, bot_env

pytestmark = pytest.mark.e2e

WAIT_FOR_STDIN = "import sys; print('up', file=sys.stderr, flush=True); sys.stdin.read()"


def sample_env() -> dict[str, str]:
    """Settings pointing at nowhere in particular (the scripts below ignore them)."""
    return bot_env(
        discord_token="t",
        discord_api_base="http://127.0.0.1:9/api/v10",
        discord_gateway_url="ws://127.0.0.1:9/gateway",
        redis_url="redis://127.0.0.1:9/0",
        openrouter_base_url="http://127.0.0.1:9/api/v1",
    )


async def test_exit_status_and_stderr_are_captured(tmp_path: Path) -> None:
    """A process that fails reports its status and what it wrote to stderr."""
    script = "import os, sys; print(os.environ['DISCORD_API_BASE'], file=sys.stderr); sys.exit(3)"
    async with BotProcess(sample_env(), tmp_path, args=["-c", script]) as proc:
        assert await proc.wait() == 3
    assert proc.stderr_text().strip() == "http://127.0.0.1:9/api/v10"


async def test_a_running_process_is_terminated_on_exit(tmp_path: Path) -> None:
    """Leaving the context stops a process that would run forever, with SIGTERM."""
    async with BotProcess(sample_env(), tmp_path, args=["-c", WAIT_FOR_STDIN]) as proc:
        assert proc.returncode is None
    assert proc.returncode == -15


async def test_the_environment_holds_no_inherited_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Variables of the test runner's own environment do not leak into the bot."""
    monkeypatch.setenv("OPENROUTER_MODEL_SECRET", "leak")
    script = (
        "import os, sys; print(sorted(k for k in os.environ if 'SECRET' in k), file=sys.stderr)"
    )
    async with BotProcess(sample_env(), tmp_path, args=["-c", script]) as proc:
        assert await proc.wait() == 0
    assert proc.stderr_text().strip() == "[]"
