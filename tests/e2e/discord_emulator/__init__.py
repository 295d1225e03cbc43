"""A local emulator of the parts of Discord's REST API and gateway the bot uses, for e2e tests."""

from __future__ import annotations

from tests.e2e.discord_emulator.emulator import DEFAULT_TOKEN, DiscordEmulator
from tests.e2e.discord_emulator.interactions import InteractionRecord
from tests.e2e.discord_emulator.model import Channel, Message, User
from tests.e2e.discord_emulator.rest import RestCall

__all__ = [
    "DEFAULT_TOKEN",
    "Channel",
    "DiscordEmulator",
    "InteractionRecord",
    "Message",
    "RestCall",
    "User",
]
