"""InteractionSink's token decisions (expiry, rejection) and the body of every edit, on real
discord.py objects built from payloads; no request leaves the process."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import discord
import pytest
from discord.utils import MISSING

from bot.core.renderer import MessageGone, Rerouted, SentMessage, SinkError
from bot.frontend.sinks import InteractionSink, edit_parameters, rejects_token

CREATED = datetime(2024, 1, 1, tzinfo=UTC)
ID = str(discord.utils.time_snowflake(CREATED))


@pytest.fixture
async def interaction() -> AsyncIterator[discord.Interaction]:
    """A slash-command interaction created at CREATED, as the gateway would deliver it."""
    client = discord.Client(intents=discord.Intents.none())
    payload = {
        "id": ID,
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


def http_error(status: int, code: int, message: str = "") -> discord.HTTPException:
    """A discord.py HTTP error as its HTTP client raises it for a JSON error body."""
    response = SimpleNamespace(status=status, reason="Error")
    return discord.HTTPException(response, {"code": code, "message": message})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "code", "rejected"),
    [
        (401, 50027, True),  # Invalid Webhook Token
        (404, 10015, True),  # Unknown Webhook
        (401, 0, True),  # a proxy's bare 401: webhook routes carry no other credentials
        (404, 10008, False),  # Unknown Message: the message was deleted
        (403, 50013, False),
        (500, 0, False),
    ],
)
def test_which_errors_reject_the_token(status: int, code: int, rejected: bool) -> None:
    """401s and Unknown Webhook mean the token is gone; other errors are about the message."""
    assert rejects_token(http_error(status, code)) is rejected


def test_rejected_token_moves_a_public_answer_to_the_channel_at_once(
    interaction: discord.Interaction, caplog: pytest.LogCaptureFixture
) -> None:
    """A token Discord rejects one minute in is given up at once: the answer is rerouted to the
    channel's bucket, later sends go there, and one warning line says why."""
    sink = InteractionSink(interaction, private=False, now=lambda: CREATED + timedelta(minutes=1))
    assert not sink.expired
    with caplog.at_level(logging.WARNING):
        failure = sink.failure(http_error(401, 50027, "Invalid Webhook Token"), "editing")
    assert isinstance(failure, Rerouted)
    assert (failure.old_bucket, failure.new_bucket) == (sink.token_bucket, sink.channel_bucket)
    assert sink.token_bucket == f"interaction:{ID}"
    assert sink.expired
    assert sink.send_bucket == sink.channel_bucket
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "rejected the interaction token" in record.getMessage()
    assert "401 50027: Invalid Webhook Token" in record.getMessage()
    assert "continuing in the channel" in record.getMessage()


def test_rejected_token_ends_a_private_answer(interaction: discord.Interaction) -> None:
    """A private answer cannot leave its token: a rejection ends it."""
    sink = InteractionSink(interaction, private=True, now=lambda: CREATED)
    assert isinstance(
        sink.failure(http_error(404, 10015, "Unknown Webhook"), "editing"), MessageGone
    )
    assert sink.expired


@pytest.mark.parametrize(
    ("status", "code", "kind"), [(404, 10008, MessageGone), (500, 0, SinkError)]
)
def test_other_errors_keep_the_token(
    interaction: discord.Interaction, status: int, code: int, kind: type[Exception]
) -> None:
    """A deleted message or a server error is no reason to stop using the token."""
    sink = InteractionSink(interaction, private=False, now=lambda: CREATED)
    failure = sink.failure(http_error(status, code), "editing")
    assert type(failure) is kind
    assert not sink.expired


async def test_editing_through_an_expired_token_is_rerouted_without_a_request(
    interaction: discord.Interaction,
) -> None:
    """Past the token's time a public answer's edit is not made: the renderer is told to make it
    again through the channel's bucket (so the channel's pacing counts it)."""
    sink = InteractionSink(interaction, private=False, now=lambda: CREATED + timedelta(minutes=15))
    with pytest.raises(Rerouted) as raised:
        await sink.edit(SentMessage("77", sink.token_bucket), "text")
    assert raised.value.new_bucket == sink.channel_bucket


@pytest.mark.parametrize(
    "change", [{"content": "see https://example.com"}, {"view": discord.ui.View(timeout=None)}]
)
def test_every_edit_sends_suppress_embeds_and_no_pings(change: dict[str, object]) -> None:
    """Content and button edits carry SUPPRESS_EMBEDS (1 << 2), so link previews stay hidden."""
    fields: dict[str, object] = {"content": MISSING, "view": MISSING} | change
    with edit_parameters(None, **fields) as params:
        payload = params.payload
    assert payload is not None
    assert payload["flags"] == 1 << 2
    assert payload["allowed_mentions"] == {"parse": []}
