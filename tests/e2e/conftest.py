"""Fixtures for end-to-end tests: the Discord emulator, discord.py clients pointed at it, and
the whole bot (redis-server, emulator, scripted Responses server, `python -m bot`) per module."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import discord
import discord.gateway
import discord.http
import pytest
import pytest_asyncio
import yarl

from tests.e2e.discord_emulator import DEFAULT_TOKEN, DiscordEmulator
from tests.e2e.stack import BotStack, running_stack

ClientStarter = Callable[[discord.Client], Awaitable[asyncio.Task[None]]]


@pytest.fixture
async def emulator() -> AsyncIterator[DiscordEmulator]:
    """A running emulator with the default world, stopped after the test."""
    async with DiscordEmulator() as emu:
        yield emu


def point_discord_py_at(emu: DiscordEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Send discord.py's REST and gateway traffic to the emulator (restored after the test)."""
    monkeypatch.setattr(discord.http.Route, "BASE", emu.api_base)
    monkeypatch.setattr(
        discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(emu.gateway_url)
    )


@pytest.fixture
async def start_client(
    emulator: DiscordEmulator, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[ClientStarter]:
    """Start discord.py clients against the emulator in this loop; close them all afterwards."""
    point_discord_py_at(emulator, monkeypatch)
    started: list[tuple[discord.Client, asyncio.Task[None]]] = []

    async def start(client: discord.Client) -> asyncio.Task[None]:
        task = asyncio.create_task(client.start(DEFAULT_TOKEN))
        started.append((client, task))
        return task

    try:
        yield start
    finally:
        for client, task in started:
            await client.close()
            with contextlib.suppress(discord.ClientException, discord.ConnectionClosed):
                await task


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotStack]:
    """One bot process with its own redis-server, emulator and Responses server per module."""
    async with running_stack(tmp_path_factory.mktemp("stack")) as running:
        yield running
        assert_clean_log(running.bot.stderr_text())


def assert_clean_log(stderr: str) -> None:
    """The bot logged no error and no traceback while a module's scenarios ran."""
    bad = [line for line in stderr.splitlines() if line.startswith(("ERROR", "CRITICAL", "Trace"))]
    assert bad == [], "the bot logged errors:\n" + "\n".join(bad[:20])
