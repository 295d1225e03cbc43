"""Text splitting: best-boundary cuts, grapheme safety, fence tracking, closing and reopening."""

from __future__ import annotations

import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.core.splitting import (
    GRAPHEME,
    FenceTracker,
    OpenFence,
    fence_state_after,
    find_cut,
    leading_whitespace,
    message_content,
    next_fence_state,
    rstrip_clusters,
)

PYTHON = OpenFence(3, "python")
CLUSTERS = [
    "👨‍👩‍👧‍👦",  # family: ZWJ sequence
    "🇫🇷",  # flag: regional indicator pair
    "👍🏽",  # skin tone modifier
    "é",  # e + combining acute
    "ḗ",  # two combining marks
    "\r\n",
    "؀ ",  # Arabic number sign (Prepend) + space is one cluster
    " ́",  # space + combining acute is one cluster
]


def boundaries(text: str) -> set[int]:
    """Every grapheme cluster boundary of `text`."""
    return {0} | {match.end() for match in GRAPHEME.finditer(text)}


def test_paragraph_break_preferred_over_line_and_space() -> None:
    """A paragraph break in the second half of the room wins over later lines and spaces."""
    text = "a" * 60 + "\n\n" + "b" * 20 + "\nc c c c " + "d" * 200
    cut = find_cut(text, None, 100)
    assert cut.body == "a" * 60
    assert text[cut.rest :].startswith("b")


def test_line_break_preferred_over_sentence() -> None:
    """Without a paragraph break the last line break wins."""
    text = "word " * 12 + "\n" + "Sentence. " * 3 + "x" * 200
    cut = find_cut(text, None, 100)
    assert cut.body == ("word " * 12).rstrip()


def test_sentence_end_preferred_over_space() -> None:
    """A sentence end beats a later space."""
    text = "Short one. " * 6 + "and then more words " * 20
    cut = find_cut(text, None, 100)
    assert cut.body.endswith(".")
    assert len(cut.body) > 50


def test_space_used_when_no_better_boundary() -> None:
    """Plain words split at the last space that fits."""
    text = "abcd " * 40
    cut = find_cut(text, None, 100)
    assert cut.body == ("abcd " * 20).rstrip()


def test_early_paragraph_break_not_worth_a_tiny_message() -> None:
    """A paragraph break in the first half of the room loses to a later space."""
    text = "hi\n\n" + "word " * 40
    cut = find_cut(text, None, 100)
    assert len(cut.body) > 50


def test_long_word_is_cut_hard_at_the_limit() -> None:
    """A word longer than a message is cut at the limit."""
    text = "x" * 500
    cut = find_cut(text, None, 100)
    assert cut.body == "x" * 100
    assert cut.rest == 100


def test_hard_cut_never_splits_a_family_emoji() -> None:
    """A cut through a run of ZWJ emoji lands between whole clusters."""
    family = "👨‍👩‍👧‍👦"
    text = family * 40
    cut = find_cut(text, None, 100)
    assert len(cut.body) <= 100
    assert cut.body == family * (len(cut.body) // len(family))


def test_hard_cut_keeps_flags_paired() -> None:
    """Regional indicators stay in pairs across a cut."""
    text = "x" + "🇫🇷🇩🇪" * 60
    cut = find_cut(text, None, 101)
    assert cut.rest in boundaries(text)
    assert (len(cut.body) - 1) % 2 == 0


def test_space_followed_by_combining_mark_is_not_a_boundary() -> None:
    """A space that a combining mark attaches to is no cut point."""
    text = "a" * 95 + " \u0301" + "b" * 20 + " " + "c" * 200
    cut = find_cut(text, None, 100)
    assert cut.rest in boundaries(text)
    assert not cut.body.endswith(" ")


def test_code_block_closed_and_reopened_with_language() -> None:
    """A cut inside a fence closes it; the next part reopens it with its language."""
    text = "Intro\n```python\n" + "print('hello')\n" * 20
    cut = find_cut(text, None, 100)
    assert cut.end == PYTHON
    content = message_content(cut.body, None, cut.end)
    assert content.endswith("\n```")
    assert len(content) <= 100
    rest = text[cut.rest :]
    nxt = message_content(rest.strip(), cut.end, fence_state_after(rest.strip(), cut.end))
    assert nxt.startswith("```python\nprint")


def test_cut_inside_fence_prefers_line_breaks() -> None:
    """Code is split between lines, never inside one, when lines are short."""
    text = "```js\n" + "let value = 1;\n" * 20
    cut = find_cut(text, None, 120)
    assert cut.body.endswith("let value = 1;")


def test_reopened_part_counts_its_opener() -> None:
    """A part that starts inside a fence leaves room for the reopened fence line."""
    text = "x = 1\n" * 40
    cut = find_cut(text, PYTHON, 100)
    content = message_content(cut.body, PYTHON, cut.end)
    assert len(content) <= 100
    assert content.startswith("```python\n")
    assert content.endswith("\n```")


def test_fence_states() -> None:
    """Openers open, bare closers of enough backticks close, info lines inside code do not."""
    assert next_fence_state(None, "```python") == PYTHON
    assert next_fence_state(None, "   ```") == OpenFence(3)
    assert next_fence_state(PYTHON, "```") is None
    assert next_fence_state(PYTHON, "```js") == PYTHON
    assert next_fence_state(OpenFence(4), "```") == OpenFence(4)
    assert next_fence_state(None, "use ``` inline") is None
    assert next_fence_state(None, "```a```") is None
    assert next_fence_state(None, "```" + "x" * 30) == OpenFence(3)


def test_fence_tracker_matches_full_scan() -> None:
    """Feeding text in pieces gives the same state as scanning it whole."""
    text = "a\n```py\ncode\n```\n\n````\nx\n```\n"
    tracker = FenceTracker()
    for index, char in enumerate(text):
        tracker.feed(char)
        assert tracker.state == fence_state_after(text[: index + 1])


def test_rstrip_keeps_prepend_clusters_whole() -> None:
    """Trailing whitespace goes, except a space a Prepend character holds on to."""
    assert rstrip_clusters("abc  \n ") == "abc"
    assert rstrip_clusters("x؀ ") == "x؀ "
    assert rstrip_clusters("x؀\n") == "x؀"


def test_leading_whitespace() -> None:
    """Message starts drop whitespace, keep indentation in code, keep spaces marks attach to."""
    assert leading_whitespace("  \n hello", in_fence=False) == 4
    assert leading_whitespace("\n\n    indented", in_fence=True) == 2
    assert leading_whitespace("   ", in_fence=False) is None
    assert leading_whitespace("  \u0301x", in_fence=False) == 1


texts = st.lists(
    st.one_of(
        st.sampled_from(
            ["word", " ", "\n", "\n\n", ". ", "```python\n", "\n```\n", "  ", "x" * 40, *CLUSTERS]
        ),
        st.text(max_size=12),
    ),
    max_size=80,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(text=texts, limit=st.integers(min_value=100, max_value=300), start_open=st.booleans())
def test_any_cut_fits_balances_and_respects_graphemes(
    text: str, limit: int, start_open: bool
) -> None:
    """Every cut: content within the limit, balanced fences, boundaries between clusters."""
    start = PYTHON if start_open else None
    text = "x" + text  # a part's text starts with a non-space
    cut = find_cut(text, start, limit)
    content = message_content(cut.body, start, cut.end)
    assert 0 < len(cut.body) <= len(content) <= limit
    assert content.strip()
    assert fence_state_after(content) is None
    assert cut.end == fence_state_after(cut.body, start)
    assert text[len(cut.body) : cut.rest].strip() == ""
    assert len(cut.body) in boundaries(text)
    assert cut.rest in boundaries(text)


def test_grapheme_regex_agrees_with_examples() -> None:
    """The regex module's \\X treats the listed sequences as single clusters."""
    for cluster in CLUSTERS:
        assert regex.fullmatch(r"\X", cluster), cluster


def test_no_cut_right_before_the_closing_fence() -> None:
    """The next message does not start with an empty code block when another cut exists."""
    text = "```py\n" + "a = 1\n" * 14 + "```\nAfter the code block there is prose " + "z" * 80
    limit = len("```py\n" + "a = 1\n" * 14) + 3  # the closer fits only as an added one
    cut = find_cut(text, None, limit)
    rest = text[cut.rest :].lstrip("\n")
    assert not rest.startswith("```\n")
