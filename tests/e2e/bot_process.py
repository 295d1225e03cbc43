"""Run the bot (`python -m bot`) as a subprocess for e2e tests, and always tear it down."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
from types import TracebackType

REPO_ROOT = Path(__file__).resolve().parents[2]
PASSED_THROUGH = ("PATH", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")


def bot_env(
    *,
    discord_token: str,
    discord_api_base: str,
    discord_gateway_url: str,
    redis_url: str,
    openrouter_base_url: str,
    openrouter_api_key: str = "sk-or-test",
    **extra: str,
) -> dict[str, str]:
    """The environment the bot reads its settings from, pointed at local test servers."""
    env = {
        "DISCORD_TOKEN": discord_token,
        "DISCORD_API_BASE": discord_api_base,
        "DISCORD_GATEWAY_URL": discord_gateway_url,
        "REDIS_URL": redis_url,
        "OPENROUTER_BASE_URL": openrouter_base_url,
        "OPENROUTER_API_KEY": openrouter_api_key,
        # Many bots run at once in tests: no /healthz server unless a test asks for one.
        "HTTP_PORT": "0",
        # Scenarios ask many questions a minute as the same few members; the per-member rate
        # has its own scenarios (test_scenarios_guard.py), which set it.
        "USER_RATE_PER_MINUTE": "0",
    }
    return env | {key.upper(): value for key, value in extra.items()}


class BotProcess:
    """`python -m bot` in a clean environment and a scratch directory, stderr to a file."""

    def __init__(
        self,
        env: dict[str, str],
        workdir: Path,
        *,
        args: list[str] | None = None,
        stop_timeout: float = 10.0,
    ) -> None:
        self.env = env
        self.workdir = workdir
        self.args = args if args is not None else ["-m", "bot"]
        self.stop_timeout = stop_timeout
        self.stderr_path = workdir / "bot-stderr.log"
        self.stdout_path = workdir / "bot-stdout.log"
        self.proc: asyncio.subprocess.Process | None = None

    def _environment(self) -> dict[str, str]:
        """Only what the bot needs: no .env of the developer's, no inherited secrets."""
        inherited = {key: os.environ[key] for key in PASSED_THROUGH if key in os.environ}
        return inherited | {"PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"} | self.env

    async def start(self) -> None:
        """Start the process (in the scratch directory, so no stray .env is read)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.stderr_path.open("wb") as stderr, self.stdout_path.open("wb") as stdout:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                *self.args,
                cwd=self.workdir,
                env=self._environment(),
                stdin=asyncio.subprocess.PIPE,
                stdout=stdout,
                stderr=stderr,
            )

    async def wait(self, timeout: float = 30.0) -> int:  # noqa: ASYNC109 -- bounded by design
        """Wait for the process to exit by itself and return its exit status."""
        assert self.proc is not None, "start() first"
        return await asyncio.wait_for(self.proc.wait(), timeout)

    async def stop(self) -> int | None:
        """SIGTERM, then SIGKILL if it does not exit within stop_timeout; returns the status."""
        if self.proc is None:
            return None
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), self.stop_timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        return self.proc.returncode

    @property
    def returncode(self) -> int | None:
        """The exit status, or None while running."""
        return None if self.proc is None else self.proc.returncode

    def stderr_text(self) -> str:
        """Everything the process wrote to stderr so far."""
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    async def __aenter__(self) -> BotProcess:
        """Start the process."""
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop the process even when the test failed; print its stderr on failure."""
        await self.stop()
        if exc_type is not None:
            print(f"--- bot stderr ({self.stderr_path}) ---\n{self.stderr_text()}")
