"""Channel and server choices of model and system prompt, and their precedence."""

from __future__ import annotations

import redis.asyncio as aioredis

from bot.core.keys import ConversationKey
from bot.core.prefs import Effective, Preferences

KEY = ConversationKey("1", "10")
OTHER_CHANNEL = ConversationKey("1", "11")
OTHER_SERVER = ConversationKey("2", "10")


def _prefs(redis: aioredis.Redis) -> Preferences:
    return Preferences(redis, default_model="base/model", default_system="Be brief.")


async def test_defaults_when_nothing_is_set(redis_client: aioredis.Redis) -> None:
    """With no choices stored, the settings' defaults are in force."""
    eff = await _prefs(redis_client).effective(KEY)
    assert eff == {
        "model": Effective("base/model", "default"),
        "system": Effective("Be brief.", "default"),
    }


async def test_channel_overrides_server_overrides_default(redis_client: aioredis.Redis) -> None:
    """A channel's choice beats its server's; the server's reaches every other channel."""
    prefs = _prefs(redis_client)
    await prefs.set(KEY, "server", "model", "server/model")
    await prefs.set(KEY, "channel", "model", "channel/model")
    assert (await prefs.effective(KEY))["model"] == Effective("channel/model", "channel")
    assert (await prefs.effective(OTHER_CHANNEL))["model"] == Effective("server/model", "server")
    assert (await prefs.effective(OTHER_SERVER))["model"] == Effective("base/model", "default")


async def test_clearing_lets_the_next_level_show(redis_client: aioredis.Redis) -> None:
    """Setting an empty value removes the choice at that scope only."""
    prefs = _prefs(redis_client)
    await prefs.set(KEY, "server", "system", "Server voice.")
    await prefs.set(KEY, "channel", "system", "Channel voice.")
    await prefs.set(KEY, "channel", "system", "")
    assert (await prefs.effective(KEY))["system"] == Effective("Server voice.", "server")


async def test_thread_owner_round_trip(redis_client: aioredis.Redis) -> None:
    """The owner of a thread conversation is remembered; other conversations have none."""
    prefs = _prefs(redis_client)
    await prefs.set_owner(KEY, "42")
    assert await prefs.owner(KEY) == "42"
    assert await prefs.owner(OTHER_CHANNEL) is None


async def test_channel_keys_share_the_conversation_hash_tag(redis_client: aioredis.Redis) -> None:
    """Channel choices live under the conversation's hash tag (one Cluster slot)."""
    prefs = _prefs(redis_client)
    await prefs.set(KEY, "channel", "model", "m")
    await prefs.set_owner(KEY, "1")
    keys = {k.decode() for k in await redis_client.keys("*")}
    assert {KEY.sub("prefs"), KEY.sub("meta")} <= keys


async def test_a_stored_value_that_is_not_utf8_is_shown_not_raised(
    redis_client: aioredis.Redis,
) -> None:
    """A broken stored choice reads with replacement characters, so showing it cannot fail."""
    await redis_client.hset(KEY.prefs, "system", b"Be \xff brief.")  # type: ignore[misc]
    eff = await _prefs(redis_client).effective(KEY)
    assert eff["system"] == Effective("Be \ufffd brief.", "channel")
