"""Reading an unfinished reply back from its messages: the marker and the fences the cuts added
come off, so what is stored and shown is the answer's own text."""

from __future__ import annotations

import pytest

from bot.core.inflight import answer_text, unmarked
from bot.core.renderer import ReplyLayout


@pytest.mark.parametrize(
    ("streaming", "final"),
    [
        ("Hello there ▌", "Hello there"),
        ("Look:\n```py\nx = 1 ▌\n```", "Look:\n```py\nx = 1\n```"),
        ("Done:\n```\n▌", "Done:\n```"),
        ("Already final", "Already final"),
    ],
)
def test_unmarked_shows_what_the_final_edit_would(streaming: str, final: str) -> None:
    """The marker goes wherever the renderer put it; a temporary closer becomes the real end."""
    assert unmarked(streaming) == final


def streamed_parts(text: str, limit: int) -> list[str]:
    """The messages a reply of `text` shows while streaming, before its final event."""
    layout = ReplyLayout(limit=limit)
    layout.add_text(text)
    contents = []
    while (operation := layout.take()) is not None:
        contents.append(operation.content)
        layout.applied(operation)
    return contents


def test_a_code_block_cut_across_messages_reads_back_whole() -> None:
    """A fence the cut closed and reopened is read back as one block."""
    code = "\n".join(f"line_{n} = {n}" for n in range(40))
    text = f"Here:\n```py\n{code}\n```\nDone"
    parts = streamed_parts(text, limit=200)
    assert len(parts) > 2
    assert answer_text(parts).replace("\n", "") == text.replace("\n", "")
    assert answer_text(parts).count("```") == 2


def test_text_across_plain_cuts_and_the_marker_reads_back() -> None:
    """Prose cut into several messages reads back word for word, without the marker."""
    text = " ".join(f"word{n}" for n in range(60))
    parts = streamed_parts(text, limit=120)
    assert len(parts) > 2
    assert parts[-1].endswith(" ▌")
    assert answer_text(parts).split() == text.split()
