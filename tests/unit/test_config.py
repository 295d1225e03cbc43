"""Settings: the shipped .env.example loads as written, and an empty value means "not set"."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.config import ConfigError, Settings, load_settings

REPO_ROOT = Path(__file__).resolve().parents[2]
ENV_EXAMPLE = REPO_ROOT / ".env.example"


def filled_example(tmp_path: Path) -> Path:
    """.env.example exactly as shipped, with only the two keys a new user fills in."""
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    text = re.sub(r"(?m)^DISCORD_TOKEN=$", "DISCORD_TOKEN=discord-token-value", text)
    text = re.sub(r"(?m)^OPENROUTER_API_KEY=$", "OPENROUTER_API_KEY=sk-or-value", text)
    path = tmp_path / ".env"
    path.write_text(text, encoding="utf-8")
    return path


def _defaults() -> dict[str, object]:
    """Every setting's default, by its variable name."""
    return {name.upper(): field.default for name, field in Settings.model_fields.items()}


def test_shipped_env_example_loads_with_the_two_keys_filled(tmp_path: Path) -> None:
    """cp .env.example .env plus the two keys gives valid settings (what `make run` reads)."""
    settings = load_settings(filled_example(tmp_path))
    assert settings.discord_token is not None
    assert settings.discord_token.get_secret_value() == "discord-token-value"
    assert settings.openrouter_api_key is not None
    assert settings.dev_guild_id is None


def test_env_example_names_real_settings_and_shows_their_defaults() -> None:
    """Every line of .env.example is a real setting whose shown value is its default."""
    defaults = _defaults()
    lines = [
        line
        for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    ]
    assert lines
    for line in lines:
        name, _, value = line.partition("=")
        assert name in defaults, f"{name} is not a setting"
        default = defaults[name]
        if value == "":
            continue
        shown = value.strip('"')
        if hasattr(default, "get_secret_value"):
            default = default.get_secret_value()
        if isinstance(default, bool):
            assert shown == str(default).lower(), name
        else:
            assert shown == str(default), name


@pytest.mark.parametrize("name", sorted(_defaults()))
def test_an_empty_value_means_not_set(name: str, tmp_path: Path) -> None:
    """`NAME=` in .env leaves every setting at its default instead of failing start-up."""
    env = tmp_path / ".env"
    env.write_text(f"{name}=\n", encoding="utf-8")
    settings = load_settings(env)
    assert settings == Settings(_env_file=None)  # type: ignore[call-arg]


def test_a_malformed_value_still_names_its_variable(tmp_path: Path) -> None:
    """A non-empty bad value is still one line naming the variable."""
    env = tmp_path / ".env"
    env.write_text("DEV_GUILD_ID=abc\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="DEV_GUILD_ID"):
        load_settings(env)


def test_answer_option_settings_parse_to_their_canonical_form(tmp_path: Path) -> None:
    """REASONING_EFFORT, WEB_SEARCH, WEB_MAX_RESULTS and FALLBACK_MODELS read as typed options."""
    env = tmp_path / ".env"
    env.write_text(
        "REASONING_EFFORT=High\nWEB_SEARCH=true\nWEB_MAX_RESULTS=3\n"
        "FALLBACK_MODELS= a/one , b/two:free ,a/one\nUSAGE_FOOTER=true\n",
        encoding="utf-8",
    )
    settings = load_settings(env)
    assert settings.reasoning == "high"
    assert (settings.web_search, settings.web_max_results) == (True, 3)
    assert settings.fallbacks == ("a/one", "b/two:free")
    assert settings.usage_footer is True


def test_answer_option_defaults_add_nothing() -> None:
    """By default the model reasons as it likes, no web search, no fallbacks, no footer, and
    the output budget leaves a reasoning model room to answer."""
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (settings.reasoning, settings.web_search, settings.fallbacks) == (None, False, ())
    assert settings.usage_footer is False
    assert settings.max_output_tokens == 4096


@pytest.mark.parametrize(
    ("line", "name"),
    [
        ("REASONING_EFFORT=extreme", "REASONING_EFFORT"),
        ("FALLBACK_MODELS=a/one,b/two,c/three", "FALLBACK_MODELS"),
        ("FALLBACK_MODELS=not a model", "FALLBACK_MODELS"),
        ("WEB_MAX_RESULTS=50", "WEB_MAX_RESULTS"),
    ],
)
def test_bad_answer_option_settings_are_one_line(tmp_path: Path, line: str, name: str) -> None:
    """A bad reasoning effort, too many or malformed fallbacks, or too many results name the
    variable in one sentence."""
    env = tmp_path / ".env"
    env.write_text(line + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=name) as caught:
        load_settings(env)
    assert "\n" not in str(caught.value)
    assert not str(caught.value).endswith("..")
