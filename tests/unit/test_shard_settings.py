"""SHARD_COUNT, SHARD_IDS and DISCORD_REQUESTS_PER_SECOND: defaults, parsing, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import ConfigError, load_settings
from bot.core.keys import ConversationKey, process_inbox, shard_lease


def settings_from(tmp_path: Path, text: str) -> object:
    """Settings read from a .env holding `text`."""
    env = tmp_path / ".env"
    env.write_text(text, encoding="utf-8")
    return load_settings(env)


def test_no_shard_settings_mean_one_process_with_the_one_shard(tmp_path: Path) -> None:
    """Empty SHARD_COUNT and SHARD_IDS: shard 0 of 1, as a bot that does not shard."""
    settings = load_settings(None)
    assert settings.shards == (1, (0,))
    assert settings.discord_requests_per_second == 40


def test_count_alone_runs_every_shard_and_ids_a_subset(tmp_path: Path) -> None:
    """SHARD_COUNT=4 runs shards 0-3 here; SHARD_IDS picks some, kept sorted."""
    assert load_settings(None, shard_count=4).shards == (4, (0, 1, 2, 3))
    settings = load_settings(None, shard_count=4, shard_ids=" 3, 1")
    assert settings.shards == (4, (1, 3))
    assert settings.shard_ids == "1,3"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("SHARD_IDS=0\n", "needs SHARD_COUNT"),
        ("SHARD_COUNT=2\nSHARD_IDS=2\n", "from 0 to 1"),
        ("SHARD_COUNT=2\nSHARD_IDS=0,0\n", "twice"),
        ("SHARD_COUNT=2\nSHARD_IDS=zero\n", "separated by commas"),
        ("SHARD_COUNT=0\n", "SHARD_COUNT"),
        ("DISCORD_REQUESTS_PER_SECOND=51\n", "DISCORD_REQUESTS_PER_SECOND"),
    ],
)
def test_bad_shard_settings_are_one_line(tmp_path: Path, text: str, says: str) -> None:
    """A bad shard or budget setting stops start-up with one line naming it."""
    with pytest.raises(ConfigError, match=says) as caught:
        settings_from(tmp_path, text)
    assert "\n" not in str(caught.value)


def test_key_names_of_several_processes() -> None:
    """A shard's lease names its count; a process's inbox its id; a running answer sits with
    its conversation (same hash tag)."""
    assert shard_lease(2, 1) == "bot:shard:2:1"
    assert process_inbox("host.1.ab") == "bot:process:host.1.ab:inbox"
    assert ConversationKey("1", "2").running == "{g:1:c:2}:running"
