"""The Discord side of the guard rails that needs no I/O: intents, DM keys, refusal lines."""

from __future__ import annotations

from types import SimpleNamespace

from bot.core.keys import DM_GUILD, ConversationKey, ServerKey
from bot.core.limits import BudgetSpent, ChannelNotAllowed, RoleNotAllowed, TooFast
from bot.frontend.client import make_intents
from bot.frontend.gate import guild_of, places_of, refusal_line, silent_for_mentions


def test_direct_messages_are_received_only_when_allowed() -> None:
    """The DM intent is asked for only with ALLOW_DMS; guild messages and content always."""
    closed, open_ = make_intents(), make_intents(allow_dms=True)
    assert not closed.dm_messages
    assert open_.dm_messages
    for intents in (closed, open_):
        assert intents.guild_messages
        assert intents.message_content
        assert not intents.members


def test_direct_messages_have_a_pseudo_server_that_no_server_can_collide_with() -> None:
    """A DM has no guild: its limits live under "dm", its channel is a conversation of it."""
    dm_channel = SimpleNamespace(id=42)
    assert guild_of(dm_channel) == DM_GUILD
    assert places_of(dm_channel) == []
    assert guild_of(SimpleNamespace(guild=SimpleNamespace(id=900))) == "900"
    assert ServerKey(DM_GUILD).tag == "{g:dm}"
    assert ConversationKey(DM_GUILD, "42").tag == "{g:dm:c:42}"
    assert not DM_GUILD.isdigit()


def test_refusals_use_discord_timestamps_and_closed_places_stay_silent() -> None:
    """A budget refusal shows its reset as a Discord timestamp; only limits answer mentions."""
    spent = BudgetSpent(what="tokens", resets_at=1738368000, resets_in=60)
    assert refusal_line(spent).endswith("It resets <t:1738368000:R>.")
    assert not silent_for_mentions(spent)
    assert not silent_for_mentions(TooFast(retry_after=3, limit=6))
    assert silent_for_mentions(ChannelNotAllowed())
    assert silent_for_mentions(RoleNotAllowed())
