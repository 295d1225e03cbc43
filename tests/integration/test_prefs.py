"""Channel and server choices (model, system prompt, reasoning, web, fallbacks, footer), their
precedence, validation, and the typed options read from them."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from bot.config import load_settings
from bot.core.keys import ConversationKey
from bot.core.options import AnswerOptions, OptionError
from bot.core.prefs import (
    PREF_NAMES,
    Effective,
    Preferences,
    PrefName,
    answer_options,
    usage_footer,
)
from bot.wiring import make_prefs
from tests.support.redis_target import all_keys

pytestmark = pytest.mark.on_cluster

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
        "reasoning": Effective("auto", "default"),
        "web": Effective("off", "default"),
        "fallbacks": Effective("none", "default"),
        "footer": Effective("off", "default"),
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
    keys = await all_keys(redis_client)
    assert {KEY.sub("prefs"), KEY.sub("meta")} <= keys


async def test_a_stored_value_that_is_not_utf8_is_shown_not_raised(
    redis_client: aioredis.Redis,
) -> None:
    """A broken stored choice reads with replacement characters, so showing it cannot fail."""
    await redis_client.hset(KEY.prefs, "system", b"Be \xff brief.")  # type: ignore[misc]
    eff = await _prefs(redis_client).effective(KEY)
    assert eff["system"] == Effective("Be \ufffd brief.", "channel")


async def test_every_choice_follows_channel_over_server_over_default(
    redis_client: aioredis.Redis,
) -> None:
    """Reasoning, web and fallbacks resolve like the model; footer is a server choice only."""
    prefs = Preferences(
        redis_client,
        default_model="base/model",
        default_system="Be brief.",
        default_reasoning="low",
        default_web="on",
        default_fallbacks="a/one",
    )
    values: dict[PrefName, tuple[str, str]] = {
        "reasoning": ("medium", "high"),
        "web": ("off", "on"),
        "fallbacks": ("b/two", "c/three,d/four"),
    }
    for name, (server_value, channel_value) in values.items():
        await prefs.set(KEY, "server", name, server_value)
        await prefs.set(KEY, "channel", name, channel_value)
        assert (await prefs.effective(KEY))[name] == Effective(channel_value, "channel")
        assert (await prefs.effective(OTHER_CHANNEL))[name] == Effective(server_value, "server")
    assert (await prefs.effective(OTHER_SERVER))["reasoning"] == Effective("low", "default")
    assert set(await prefs.effective(KEY)) == set(PREF_NAMES)


@pytest.mark.parametrize(
    ("name", "typed", "stored"),
    [
        ("reasoning", " HIGH ", "high"),
        ("reasoning", "auto", "auto"),
        ("web", "yes", "on"),
        ("web", "False", "off"),
        ("fallbacks", "a/one, b/two:free", "a/one,b/two:free"),
        ("fallbacks", "none", "none"),
    ],
)
async def test_values_are_stored_in_canonical_form(
    redis_client: aioredis.Redis, name: PrefName, typed: str, stored: str
) -> None:
    """What a person typed is stored in one form: lower-case efforts, on/off, a clean list."""
    prefs = _prefs(redis_client)
    assert await prefs.set(KEY, "channel", name, typed) == stored
    assert (await prefs.effective(KEY))[name] == Effective(stored, "channel")


@pytest.mark.parametrize(
    ("name", "value", "scope", "sentence"),
    [
        ("reasoning", "max", "channel", "The reasoning effort must be one of"),
        ("web", "maybe", "channel", "Web search must be on or off."),
        ("fallbacks", "a/one,b/two,c/three", "server", "At most 2 fallback models"),
        ("fallbacks", "gpt 4", "channel", "is not a model id"),
        ("footer", "on", "channel", "only be set for the whole server"),
        ("model", "two words", "server", "A model id is one word"),
    ],
)
async def test_bad_values_are_one_sentence_and_not_stored(
    redis_client: aioredis.Redis, name: PrefName, value: str, scope: str, sentence: str
) -> None:
    """A value a choice does not take raises one sentence and leaves the choice unchanged."""
    prefs = _prefs(redis_client)
    with pytest.raises(OptionError, match=sentence) as caught:
        await prefs.set(KEY, scope, name, value)  # type: ignore[arg-type]
    assert "\n" not in str(caught.value)
    assert (await prefs.effective(KEY))[name].source == "default"


async def test_footer_is_read_from_the_server_only(redis_client: aioredis.Redis) -> None:
    """A footer value under a channel's hash (written by hand) does not count."""
    prefs = _prefs(redis_client)
    await redis_client.hset(KEY.sub("prefs"), "footer", "on")  # type: ignore[misc]
    assert usage_footer(await prefs.effective(KEY)) is False
    await prefs.set(KEY, "server", "footer", "on")
    assert (await prefs.effective(KEY))["footer"] == Effective("on", "server")
    assert usage_footer(await prefs.effective(OTHER_CHANNEL)) is True


async def test_answer_options_from_the_choices_in_force(redis_client: aioredis.Redis) -> None:
    """The typed options of a turn come from the choices; a command's web option overrides."""
    prefs = _prefs(redis_client)
    assert answer_options(await prefs.effective(KEY), web_max_results=5) == AnswerOptions()
    await prefs.set(KEY, "server", "reasoning", "high")
    await prefs.set(KEY, "channel", "web", "on")
    await prefs.set(KEY, "channel", "fallbacks", "a/one,b/two")
    choices = await prefs.effective(KEY)
    assert answer_options(choices, web_max_results=3) == AnswerOptions(
        reasoning_effort="high", web=True, web_max_results=3, fallback_models=("a/one", "b/two")
    )
    assert not answer_options(choices, web_max_results=3, web=False).web


async def test_wiring_takes_the_defaults_from_the_settings(redis_client: aioredis.Redis) -> None:
    """REASONING_EFFORT, WEB_SEARCH, FALLBACK_MODELS and USAGE_FOOTER are the defaults."""
    settings = load_settings(
        None,
        reasoning_effort="minimal",
        web_search=True,
        fallback_models="a/one",
        usage_footer=True,
    )
    eff = await make_prefs(settings, redis_client).effective(KEY)
    assert {name: e.value for name, e in eff.items() if name not in {"model", "system"}} == {
        "reasoning": "minimal",
        "web": "on",
        "fallbacks": "a/one",
        "footer": "on",
    }
    assert {e.source for e in eff.values()} == {"default"}
