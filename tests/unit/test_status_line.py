"""The reply layout's passing status line (e.g. while a tool runs)."""

from __future__ import annotations

from bot.core.events import Completed
from bot.core.renderer import ReplyLayout
from tests.unit.test_reply_layout import MARKER, FakeChannel

STATUS = "-# 🧠 Remembering…"


def test_a_status_shows_alone_then_under_the_text_and_never_in_the_final() -> None:
    """A status shows before any text, then below the streaming text; the final drops it."""
    layout, channel = ReplyLayout(), FakeChannel()
    layout.set_status(STATUS)
    channel.drain(layout)
    assert channel.contents == [STATUS]
    layout.add_text("Noted.")
    channel.drain(layout)
    assert channel.contents == [f"Noted.{MARKER}\n{STATUS}"]
    layout.set_status("")
    channel.drain(layout)
    assert channel.contents == [f"Noted.{MARKER}"]
    layout.set_status(STATUS)
    layout.finish(Completed())
    channel.drain(layout)
    assert channel.contents == ["Noted."]
    assert layout.text == "Noted."


def test_a_status_never_pushes_a_message_past_the_limit() -> None:
    """Text near the limit is cut sooner while a status shows, so every message fits."""
    layout, channel = ReplyLayout(limit=200), FakeChannel()
    layout.add_text("word " * 37)
    channel.drain(layout)
    layout.set_status(STATUS)
    channel.drain(layout)
    assert all(len(content) <= 200 for content in channel.contents)
    assert channel.contents[-1].endswith(STATUS)
