"""InteractionSink's token-expiry decision, on a real discord.Interaction built from a payload."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import discord
import pytest

from bot.frontend.sinks import InteractionSink

CREATED = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture
async def interaction() -> AsyncIterator[discord.Interaction]:
    """A slash-command interaction created at CREATED, as the gateway would deliver it."""
    client = discord.Client(intents=discord.Intents.none())
    payload = {
        "id": str(discord.utils.time_snowflake(CREATED)),
        "application_id": "1",
        "type": 2,
        "token": "interaction-token",
        "version": 1,
        "channel_id": "5",
        "data": {"id": "9", "name": "ask", "type": 1},
        "user": {"id": "3", "username": "bob", "discriminator": "0", "avatar": None},
        "locale": "en-US",
        "entitlements": [],
        "authorizing_integration_owners": {},
        "context": 0,
        "attachment_size_limit": 8 * 1024 * 1024,
    }
    yield discord.Interaction(data=payload, state=client._connection)  # type: ignore[arg-type]
    await client.close()


@pytest.mark.parametrize(
    ("age", "expired"),
    [
        (timedelta(0), False),
        (timedelta(minutes=14, seconds=29, milliseconds=999), False),
        (timedelta(minutes=14, seconds=30), True),
        (timedelta(minutes=20), True),
    ],
)
async def test_token_counts_as_expired_30_seconds_before_discords_15_minutes(
    interaction: discord.Interaction, age: timedelta, expired: bool
) -> None:
    """The sink leaves the token 30 s early, judged by the interaction's snowflake time."""
    sink = InteractionSink(interaction, private=False, now=lambda: CREATED + age)
    assert interaction.created_at == CREATED
    assert sink.expired is expired
    assert sink.send_bucket == (sink.channel_bucket if expired else sink.token_bucket)
