"""Log set-up: JSON lines with the turn's context, plain text with it in brackets, and message
content only with LOG_CONTENT=true."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from bot.core.observe import CONTENT_LOG, add_log_context, log_context
from bot.ops.logs import configure_logging

log = logging.getLogger("bot.test")


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Put the root handlers and levels back (pytest's own capture lives there)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in ("discord", CONTENT_LOG.name)}
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, old in levels.items():
            logging.getLogger(name).setLevel(old)


def test_json_lines_carry_the_turn_context() -> None:
    """Each record is one JSON object with time, level, logger, message and, inside a turn,
    guild, channel, turn id and model; outside it, none of those."""
    out = io.StringIO()
    configure_logging(level="INFO", fmt="json", content=False, stream=out)
    log.info("before")
    with log_context(guild="1", channel="2", turn="abcd"):
        add_log_context(model="openai/gpt-4o-mini")
        log.warning("inside %s", "it")
    log.info("after")
    before, inside, after = [json.loads(line) for line in out.getvalue().splitlines()]
    assert before.keys() == {"time", "level", "logger", "message"}
    assert inside == inside | {
        "level": "WARNING",
        "logger": "bot.test",
        "message": "inside it",
        "guild": "1",
        "channel": "2",
        "turn": "abcd",
        "model": "openai/gpt-4o-mini",
    }
    assert after.keys() == before.keys()


def test_json_keeps_a_traceback_on_one_line() -> None:
    """An exception's traceback is a field of the one JSON object, not extra lines."""
    out = io.StringIO()
    configure_logging(level="INFO", fmt="json", content=False, stream=out)
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    [line] = out.getvalue().splitlines()
    assert "ValueError: boom" in json.loads(line)["exception"]


def test_text_format_appends_the_context() -> None:
    """The plain format is as before, with the turn's context in brackets."""
    out = io.StringIO()
    configure_logging(level="INFO", fmt="text", content=False, stream=out)
    with log_context(guild="1", channel="2", turn="abcd"):
        log.info("hello")
    assert out.getvalue() == "INFO bot.test: hello [guild=1 channel=2 turn=abcd]\n"


@pytest.mark.parametrize("content", [False, True])
def test_message_content_only_with_log_content(content: bool) -> None:
    """The content logger is silent unless LOG_CONTENT=true, at any LOG_LEVEL."""
    out = io.StringIO()
    configure_logging(level="DEBUG", fmt="json", content=content, stream=out)
    CONTENT_LOG.info("Asked: %s", "a secret plan")
    assert ("a secret plan" in out.getvalue()) is content


def test_level_filters_and_discord_stays_quiet() -> None:
    """LOG_LEVEL=WARNING drops info lines; discord.py logs warnings and worse even at DEBUG."""
    out = io.StringIO()
    configure_logging(level="WARNING", fmt="json", content=False, stream=out)
    log.info("dropped")
    assert out.getvalue() == ""
    configure_logging(level="DEBUG", fmt="json", content=False, stream=out)
    logging.getLogger("discord.gateway").info("a gateway event with message content")
    assert out.getvalue() == ""
