"""The pure reply state machine: parts, marker, fences, notices, and what is due when."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.core.errors import LLMStreamError
from bot.core.events import Citation, Completed, Failed, FinalEvent, Incomplete
from bot.core.renderer import Operation, ReplyLayout, SentMessage
from tests.support.reply_checks import assert_gives_back, assert_valid_message

MARKER = " ▌"


@dataclass
class FakeChannel:
    """Applies a layout's operations at once, remembering every content ever shown."""

    contents: list[str] = field(default_factory=list)
    operations: list[Operation] = field(default_factory=list)

    def step(self, layout: ReplyLayout) -> bool:
        """Do the due operation, if any."""
        operation = layout.take()
        if operation is None:
            return False
        self.operations.append(operation)
        if operation.message is None:
            self.contents.append(operation.content)
            layout.applied(operation, SentMessage(str(len(self.contents) - 1), "channel:1"))
        else:
            self.contents[int(operation.message.id)] = operation.content
            layout.applied(operation)
        return True

    def drain(self, layout: ReplyLayout) -> None:
        """Do operations until nothing is due."""
        while self.step(layout):
            pass


def test_first_text_is_due_at_once_and_urgent() -> None:
    """The first visible text is a due, urgent send with the streaming marker."""
    layout = ReplyLayout()
    assert layout.plan() is None
    layout.add_text("  \n")
    assert layout.plan() is None
    layout.add_text("Hello")
    planned = layout.plan()
    assert planned is not None
    assert planned.message is None
    assert planned.urgent
    operation = layout.take()
    assert operation is not None
    assert operation.content == "Hello" + MARKER
    assert operation.first


def test_edits_coalesce_latest_wins() -> None:
    """Text that arrives while waiting goes out in one edit with the newest content."""
    layout, channel = ReplyLayout(), FakeChannel()
    layout.add_text("Hello")
    channel.drain(layout)
    for word in (" big", " wide", " world"):
        layout.add_text(word)
    planned = layout.plan()
    assert planned is not None
    assert not planned.urgent
    channel.drain(layout)
    assert channel.contents == ["Hello big wide world" + MARKER]
    assert len(channel.operations) == 2


def test_final_edit_removes_marker_and_is_urgent() -> None:
    """The final edit is urgent and shows no marker."""
    layout, channel = ReplyLayout(), FakeChannel()
    layout.add_text("Hello")
    channel.drain(layout)
    layout.finish(Completed())
    planned = layout.plan()
    assert planned is not None
    assert planned.urgent
    channel.drain(layout)
    assert channel.contents == ["Hello"]
    assert layout.complete


def test_open_fence_closed_while_streaming_and_by_the_end() -> None:
    """An open code block is closed temporarily (marker inside); an unclosed one stays closed."""
    layout, channel = ReplyLayout(), FakeChannel()
    layout.add_text("Look:\n```py\nx = 1")
    channel.drain(layout)
    assert channel.contents == ["Look:\n```py\nx = 1" + MARKER + "\n```"]
    layout.add_text("\n```\nDone.")
    channel.drain(layout)
    assert channel.contents == ["Look:\n```py\nx = 1\n```\nDone." + MARKER]
    layout.finish(Completed())
    channel.drain(layout)
    assert channel.contents == ["Look:\n```py\nx = 1\n```\nDone."]


def test_long_code_block_continues_in_a_reopened_block() -> None:
    """A code block cut across messages is closed and reopened with its language."""
    layout, channel = ReplyLayout(limit=120), FakeChannel()
    layout.add_text("Code:\n```rust\n" + "let x = 1;\n" * 30 + "```\nBye")
    layout.finish(Completed())
    channel.drain(layout)
    assert len(channel.contents) > 2
    for content in channel.contents[1:-1]:
        assert content.startswith("```rust\n")
        assert content.endswith("\n```")
    for content in channel.contents:
        assert_valid_message(content, 120)
    assert [op.first for op in channel.operations if op.message is None] == [True] + [False] * (
        len(channel.contents) - 1
    )


def test_finished_part_gets_final_edit_before_next_send() -> None:
    """A cut part is edited to its final content before the next part is sent, then never."""
    layout, channel = ReplyLayout(limit=100), FakeChannel()
    layout.add_text("word " * 10)
    channel.drain(layout)
    layout.add_text("word " * 15)
    channel.drain(layout)
    kinds = [(op.index, op.message is None, op.final) for op in channel.operations]
    assert kinds[:3] == [(0, True, False), (0, False, True), (1, True, False)]
    assert not channel.contents[0].endswith(MARKER)


@pytest.mark.parametrize(
    ("event", "notice"),
    [
        (Failed(LLMStreamError("boom")), "⚠️ The model's answer broke off with an error."),
        (Incomplete("max_output_tokens"), "✂️ The answer was cut off"),
        (Incomplete("content_filter"), "stopped early (content_filter)"),
    ],
)
def test_notices_keep_the_text(event: FinalEvent, notice: str) -> None:
    """A failed or cut answer keeps its text and adds a one-line notice."""
    layout, channel = ReplyLayout(), FakeChannel()
    layout.add_text("Partial answer")
    layout.finish(event)
    channel.drain(layout)
    assert channel.contents[0].startswith("Partial answer\n\n-# ")
    assert notice in channel.contents[0]
    assert layout.text == "Partial answer"


def test_no_text_gives_a_notice_not_a_blank_message() -> None:
    """An answer of whitespace only becomes a notice."""
    layout, channel = ReplyLayout(), FakeChannel()
    layout.add_text(" \n\n ")
    layout.finish(Completed())
    channel.drain(layout)
    assert channel.contents == ["-# The model returned an empty answer."]


def test_failure_without_text_shows_only_the_error() -> None:
    """A stream that fails before any text shows the error's sentence."""
    layout, channel = ReplyLayout(), FakeChannel()
    layout.finish(Failed(LLMStreamError("boom", user_message="It broke.")))
    channel.drain(layout)
    assert channel.contents == ["-# ⚠️ It broke."]


def test_notice_that_does_not_fit_goes_to_a_new_message() -> None:
    """A full last message gets its notice in a message of its own."""
    layout, channel = ReplyLayout(limit=100), FakeChannel()
    layout.add_text("x" * 97)
    layout.finish(Incomplete("max_output_tokens"))
    channel.drain(layout)
    assert channel.contents[0] == "x" * 97
    assert channel.contents[1].startswith("-# ✂️")


def test_sources_listed_without_previews() -> None:
    """Cited sources are numbered once each, titled links in angle brackets."""
    layout, channel = ReplyLayout(), FakeChannel()
    layout.add_text("Answer")
    layout.add_citation(Citation("https://a.example/x", "A"))
    layout.add_citation(Citation("https://a.example/x", "A again"))
    layout.add_citation(Citation("https://b.example/", "B"))
    layout.finish(Completed())
    channel.drain(layout)
    assert channel.contents == [
        "Answer\n\n-# 1. [A](<https://a.example/x>)\n-# 2. [B](<https://b.example/>)"
    ]


def test_existing_messages_are_edited_first() -> None:
    """Rendering into existing messages edits them; the ones not needed are reported."""
    old = [SentMessage("a", "channel:1"), SentMessage("b", "channel:1")]
    layout = ReplyLayout(existing=old)
    layout.add_text("New")
    operation = layout.take()
    assert operation is not None
    assert operation.message == old[0]
    layout.applied(operation)
    layout.finish(Completed())
    final = layout.take()
    assert final is not None
    layout.applied(final)
    assert layout.complete
    assert layout.messages() == [old[0]]
    assert layout.unused() == [old[1]]


def test_too_small_limit_is_refused() -> None:
    """A limit that leaves no room for fences and marker is a programming error."""
    with pytest.raises(ValueError, match="too small"):
        ReplyLayout(limit=50)


CLUSTERS = ["👨‍👩‍👧‍👦", "🇫🇷", "👍🏽", "é", "\r\n", " ́", "؀ "]
TOKENS = [
    "word",
    "longerword",
    " ",
    "  ",
    "\n",
    "\n\n",
    ". ",
    "! ",
    "```python\n",
    "\n```\n",
    "```\n",
    "    indented code\n",
    "y" * 60,
    *CLUSTERS,
]
answer_texts = st.lists(st.one_of(st.sampled_from(TOKENS), st.text(max_size=8)), max_size=120).map(
    "".join
)


@st.composite
def streamed(draw: st.DrawFn) -> tuple[str, list[str], list[bool]]:
    """A text, a cutting of it into deltas, and after which deltas the sink catches up."""
    text = draw(answer_texts)
    cuts = sorted(draw(st.sets(st.integers(0, len(text)), max_size=40)))
    bounds = [0, *cuts, len(text)]
    deltas = [text[a:b] for a, b in itertools.pairwise(bounds) if b > a]
    catch_up = draw(st.lists(st.booleans(), min_size=len(deltas), max_size=len(deltas)))
    return text, deltas, catch_up


@settings(max_examples=250, deadline=None)
@given(case=streamed(), limit=st.integers(min_value=100, max_value=260))
def test_any_stream_gives_valid_messages_that_give_back_the_text(
    case: tuple[str, list[str], list[bool]], limit: int
) -> None:
    """Any text, any cutting: every content fits and balances; the end gives back the text."""
    text, deltas, catch_up = case
    layout, channel = ReplyLayout(limit=limit), FakeChannel()
    for delta, sync in zip(deltas, catch_up, strict=True):
        layout.add_text(delta)
        if sync:
            channel.step(layout)
    layout.finish(Completed())
    channel.drain(layout)
    assert layout.complete
    assert layout.text == text
    for operation in channel.operations:
        assert_valid_message(operation.content, limit)
    for content in channel.contents:
        assert not content.endswith(MARKER)
    if text.strip():
        assert_gives_back(text, channel.contents)
    sent_at = {op.index: n for n, op in enumerate(channel.operations) if op.message is None}
    assert list(sent_at) == list(range(len(channel.contents)))
    for n, operation in enumerate(channel.operations):
        next_sent = sent_at.get(operation.index + 1)
        assert next_sent is None or n < next_sent, "a part was edited after the next was sent"


@settings(max_examples=200, deadline=None)
@given(
    pieces=st.lists(st.sampled_from(["word", " ", "\n", "  ", "x" * 30, "\t"]), max_size=40),
    limit=st.integers(min_value=100, max_value=200),
)
def test_no_whitespace_before_a_notice(pieces: list[str], limit: int) -> None:
    """A stopped answer's kept text ends without trailing whitespace before its notice."""
    layout, channel = ReplyLayout(limit=limit), FakeChannel()
    for piece in pieces:
        layout.add_text(piece)
        channel.step(layout)
    layout.finish(Incomplete("stopped"))
    channel.drain(layout)
    last = channel.contents[-1]
    assert last.endswith("-# ⏹️ Stopped.")
    text = last.removesuffix("-# ⏹️ Stopped.").removesuffix("\n\n")
    assert text == text.rstrip(), repr(last)
