"""`python -m bot check` and `sync` against local servers: the Discord emulator, the fake
Responses API (GET /key, GET /models) and the test session's redis-server.

The good configuration and two bad .env files run as real subprocesses; the other bad cases call
`check()` in-process against the same servers, which is the same code without the start-up cost.
"""

from __future__ import annotations

import asyncio
import io
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from bot.config import load_settings
from bot.ops.check import check
from tests.e2e.discord_emulator import DiscordEmulator
from tests.e2e.stack import SLASH_COMMANDS
from tests.support.fake_responses import FakeResponsesServer
from tests.support.redis_cluster import RedisCluster
from tests.support.redis_server import RedisServer, free_port

API_KEY = "sk-or-v1-check-test-secret-42"
MODELS = ["openai/gpt-4o-mini", "anthropic/claude-3.5-sonnet"]
GUARD_SECONDS = 60  # only stops a broken test from hanging


@dataclass
class Servers:
    """The local stand-ins for Discord, OpenRouter and Redis, and the environment for them."""

    emu: DiscordEmulator
    llm: FakeResponsesServer
    redis_url: str

    def env(self, **overrides: str) -> dict[str, str]:
        """Settings pointing at the local servers, with `overrides` applied."""
        base = {
            "DISCORD_TOKEN": self.emu.token,
            "DISCORD_API_BASE": self.emu.api_base,
            "DISCORD_GATEWAY_URL": self.emu.gateway_url,
            "OPENROUTER_API_KEY": API_KEY,
            "OPENROUTER_BASE_URL": self.llm.url,
            "REDIS_URL": self.redis_url,
        }
        return base | overrides


@pytest.fixture
async def servers(
    redis_server: RedisServer, redis_client: aioredis.Redis
) -> AsyncIterator[Servers]:
    """The emulator and the fake Responses API (which accepts only API_KEY), both fresh."""
    async with DiscordEmulator() as emu, FakeResponsesServer(models=MODELS) as llm:
        llm.api_key = API_KEY
        yield Servers(emu, llm, redis_server.url)


async def run_cli(cwd: Path, env: dict[str, str], *args: str) -> tuple[int, str]:
    """Run `python -m bot <args>` with only `env` (and a .env in `cwd`); its status and stdout."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        cwd=cwd,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(Path.cwd())} | env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(GUARD_SECONDS):
        out, err = await proc.communicate()
    text = out.decode() + err.decode()
    assert "Traceback" not in text, text
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def check_in_process(servers: Servers, **overrides: Any) -> tuple[int, list[str]]:
    """Run `check()` with settings built from the servers' environment plus overrides."""
    settings = load_settings(env_file=None, **(_lower(servers.env()) | overrides))
    out = io.StringIO()
    status = await check(settings, out)
    return status, out.getvalue().splitlines()


def _lower(env: dict[str, str]) -> dict[str, Any]:
    """Environment names as Settings field names."""
    return {name.lower(): value for name, value in env.items()}


def line_about(lines: list[str], text: str) -> str:
    """The one output line containing `text`."""
    found = [line for line in lines if text in line]
    assert len(found) == 1, lines
    return found[0]


async def test_good_configuration_passes_after_sync(
    servers: Servers, tmp_path: Path, redis_client: aioredis.Redis
) -> None:
    """`sync` registers the commands; then `check` gives ✓ everywhere and a warning for a Redis
    without persistence, exits 0, and prints no secret."""
    env = servers.env()
    status, out = await run_cli(tmp_path, env, "sync")
    assert status == 0, out
    assert out.startswith(f"✓ Registered {len(SLASH_COMMANDS)} slash commands (global)"), out
    assert {c["name"] for c in servers.emu.rest.commands[None]} == SLASH_COMMANDS

    status, out = await run_cli(tmp_path, env, "check")
    lines = out.splitlines()
    assert status == 0, out
    assert len(lines) == 7, out
    assert line_about(lines, "Redis at").startswith("! ")
    assert "keeps nothing on disk" in line_about(lines, "Redis at")
    assert all(line.startswith("✓ ") for line in lines if "Redis at" not in line), out
    assert "DISCORD_TOKEN is valid: the bot is llm-bot" in out
    assert f"The {len(SLASH_COMMANDS)} slash commands are registered (global) and current." in out
    assert API_KEY not in out
    assert servers.emu.token not in out

    await redis_client.config_set("appendonly", "yes")
    try:
        status, out = await run_cli(tmp_path, env, "check")
    finally:
        await redis_client.config_set("appendonly", "no")
    assert status == 0
    assert "✓ Redis at" in out
    assert "(append-only file)" in out


async def test_bad_env_files_name_what_is_wrong(servers: Servers, tmp_path: Path) -> None:
    """A .env with a refused Discord token or a malformed setting fails with one line that says
    exactly which setting is wrong."""
    env = servers.env()
    del env["DISCORD_TOKEN"]
    (tmp_path / ".env").write_text("DISCORD_TOKEN=not-the-token\n", encoding="utf-8")
    status, out = await run_cli(tmp_path, env, "check")
    assert status == 1
    assert "✗ DISCORD_TOKEN was refused by Discord (401)." in out.splitlines()
    assert "not-the-token" not in out

    (tmp_path / ".env").write_text("MAX_OUTPUT_TOKENS=lots\n", encoding="utf-8")
    status, out = await run_cli(tmp_path, env, "check")
    assert status == 1
    assert out.startswith("✗ Settings: Setting MAX_OUTPUT_TOKENS is invalid"), out


async def test_refused_openrouter_key(servers: Servers) -> None:
    """A key OpenRouter refuses is named as refused, with the status."""
    servers.llm.api_key = "sk-or-v1-another"
    status, lines = await check_in_process(servers)
    assert status == 1
    assert "✗ OPENROUTER_API_KEY was refused by OpenRouter (401)." in lines


async def test_spent_key_and_credits_left(servers: Servers) -> None:
    """A key whose limit is used up fails; one with credits left says how much."""
    servers.llm.key_limit, servers.llm.key_usage = 5.0, 5.0
    status, lines = await check_in_process(servers)
    assert status == 1
    assert "✗ OPENROUTER_API_KEY has no credits left: its limit of $5.00 is used up." in lines
    servers.llm.key_usage = 1.25
    _, lines = await check_in_process(servers)
    assert "✓ OPENROUTER_API_KEY is valid: $3.75 of its $5.00 left." in lines


async def test_unknown_default_model(servers: Servers) -> None:
    """A DEFAULT_MODEL OpenRouter does not offer is named, with the closest names."""
    status, lines = await check_in_process(servers, default_model="openai/gpt-4o-mimi")
    assert status == 1
    assert (
        "✗ DEFAULT_MODEL 'openai/gpt-4o-mimi' is not offered by OpenRouter "
        "(closest: openai/gpt-4o-mini)." in lines
    )


async def test_message_content_intent_off(servers: Servers) -> None:
    """An application without the Message Content intent fails with where to turn it on."""
    servers.emu.options.message_content_enabled = False
    status, lines = await check_in_process(servers)
    assert status == 1
    line = line_about(lines, "Message Content intent")
    assert line.startswith("✗ The Message Content intent is off for this bot: turn it on at")


async def test_redis_unreachable(servers: Servers) -> None:
    """A REDIS_URL nobody answers at fails with host and port, and the rest still runs."""
    port = free_port()
    status, lines = await check_in_process(servers, redis_url=f"redis://127.0.0.1:{port}/0")
    assert status == 1
    assert line_about(lines, "Redis at").startswith(
        f"✗ Redis at 127.0.0.1:{port} (REDIS_URL) did not answer"
    )
    assert len(lines) == 7


async def test_commands_not_synced_warns_and_lost_commands_fail(
    servers: Servers, tmp_path: Path
) -> None:
    """Commands never synced are a warning (the bot syncs at start); commands this version
    synced but Discord no longer has fail, with the command to run."""
    status, lines = await check_in_process(servers)
    assert status == 0
    line = line_about(lines, "slash commands")
    assert line.startswith("! No slash commands are registered with Discord (global); the bot")
    assert await run_cli(tmp_path, servers.env(), "sync") == (0, ANY_OUTPUT)
    servers.emu.rest.commands[None] = []
    status, lines = await check_in_process(servers)
    assert status == 1
    line = line_about(lines, "slash commands")
    assert line.startswith("✗ No slash commands are registered with Discord (global)")
    assert line.endswith("run `python -m bot sync`.")


class _Anything:
    """Equal to any value (for the output of a command only its status matters)."""

    def __eq__(self, other: object) -> bool:
        return True

    def __hash__(self) -> int:
        return 0


ANY_OUTPUT: Any = _Anything()


async def test_redis_cluster_is_checked_on_every_master(
    servers: Servers, redis_cluster: RedisCluster
) -> None:
    """With REDIS_CLUSTER=true the check reaches the cluster and reads every master's
    persistence: one master with an append-only file is not enough, so it warns."""
    first = aioredis.Redis(port=redis_cluster.ports[0])
    await first.config_set("appendonly", "yes")
    try:
        _, lines = await check_in_process(servers, redis_url=redis_cluster.url, redis_cluster=True)
    finally:
        await first.config_set("appendonly", "no")
        await first.aclose()
    port = redis_cluster.ports[0]
    assert line_about(lines, "Redis at").startswith(
        f"! Redis at 127.0.0.1:{port} answers but keeps nothing on disk"
    )


async def test_a_cluster_node_without_redis_cluster_fails_the_check(
    servers: Servers, redis_cluster: RedisCluster
) -> None:
    """A cluster node at REDIS_URL without REDIS_CLUSTER fails with the setting to change."""
    status, lines = await check_in_process(servers, redis_url=redis_cluster.url)
    port = redis_cluster.ports[0]
    assert status == 1
    assert line_about(lines, "Redis at") == (
        f"✗ Redis at 127.0.0.1:{port} is a cluster node: set REDIS_CLUSTER=true."
    )
