"""Conversation keys: one hash tag per conversation, stable ids, names that cannot break keys."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.core import keys
from bot.core.keys import ConversationKey, ServerKey


def test_key_names_share_the_hash_tag() -> None:
    """Items, lock and any other key of a conversation carry the same `{...}` tag."""
    key = ConversationKey("123", "456")
    assert key.tag == "{g:123:c:456}"
    assert key.items == "{g:123:c:456}:items"
    assert key.lock == "{g:123:c:456}:lock"
    assert key.sub("settings") == "{g:123:c:456}:settings"
    assert str(key) == "g:123:c:456"


def test_terminal_conversation_has_a_guild_of_its_own() -> None:
    """A terminal session is the channel `name` of the guild "local"."""
    key = ConversationKey.terminal("work")
    assert key == ConversationKey("local", "work")
    assert key.items == "{g:local:c:work}:items"


@pytest.mark.parametrize("name", ["", "a b", "tab\there", "{x", "y}", "x" * 101, "new\nline"])
def test_bad_channel_names_are_refused(name: str) -> None:
    """Empty, too long, whitespace or braces: a ValueError that says what is wrong."""
    with pytest.raises(ValueError, match="channel name must"):
        ConversationKey.terminal(name)


def test_bad_guild_name_is_refused() -> None:
    """The guild part is checked the same way."""
    with pytest.raises(ValueError, match="guild name must"):
        ConversationKey("", "456")


@settings(max_examples=200, deadline=None)
@given(
    st.text(min_size=1, max_size=100).filter(lambda s: not any(c.isspace() or c in "{}" for c in s))
)
def test_valid_names_give_one_well_formed_tag(name: str) -> None:
    """Any valid name yields exactly one brace pair, so Cluster hashes the whole tag."""
    key = ConversationKey.terminal(name)
    assert key.items.count("{") == 1
    assert key.items.count("}") == 1
    assert key.items.startswith(key.tag)


def test_keys_are_hashable_values() -> None:
    """Equal keys are equal and hash alike, so they can index per-conversation state."""
    assert len({ConversationKey("1", "2"), ConversationKey("1", "2")}) == 1


def test_server_keys_share_the_servers_hash_tag() -> None:
    """Every key of a server carries `{g:<guild>}`; a server's choices keep their old name."""
    server = ServerKey("123")
    names = [
        server.prefs,
        server.limits,
        server.conversations,
        server.users,
        server.rate("42"),
        server.usage("d20250131"),
        server.usage("m202501", "42"),
        server.top("d20250131", "cost"),
    ]
    assert all(name.startswith("{g:123}:") for name in names)
    assert server.prefs == "{g:123}:prefs"
    assert len(set(names)) == len(names)
    assert server.conversation("456") == ConversationKey("123", "456")


def test_bad_server_name_is_refused() -> None:
    """A server name that would break the hash tag is a ValueError."""
    with pytest.raises(ValueError, match="guild name must"):
        ServerKey("a}b")


def test_every_key_name_of_the_bot_comes_from_keys() -> None:
    """Per-conversation subkeys share the tag; the bot-wide and server keys are spelled once."""
    key = ConversationKey("123", "456")
    assert key.last_answer == "{g:123:c:456}:last-answer"
    assert key.meta == "{g:123:c:456}:meta"
    assert key.prefs == "{g:123:c:456}:prefs"
    assert keys.server_prefs("123") == "{g:123}:prefs"
    assert keys.commands_hash("global") == "bot:commands:hash:global"
    assert keys.COMMANDS_SYNC_LOCK == "bot:commands:sync-lock"
    assert keys.handled_message(789) == "bot:handled:789"
    assert key.inflight("ab12") == "{g:123:c:456}:inflight:ab12"
    assert keys.INFLIGHT_INDEX == "bot:inflight"
    assert keys.process_alive("p1") == "bot:process:p1:alive"
