"""Pure text splitting for chat messages: grapheme-safe cuts at the best boundary, fence tracking.

A long answer is shown as several messages. Each cut falls on the best boundary before the
limit (paragraph, line, sentence, space, else any grapheme boundary) and never inside a
grapheme cluster. A fenced code block open at a cut is closed at the end of one message and
reopened, with its language tag, at the start of the next; `message_content` builds that text.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import regex

GRAPHEME = regex.compile(r"\X")
FENCE_LINE = regex.compile(r"[ \t]*(`{3,10})([^`]*)")
_PREPEND = regex.compile(r"\p{Grapheme_Cluster_Break=Prepend}")
_JOINS_PREVIOUS = regex.compile(
    r"[\p{Grapheme_Cluster_Break=Extend}\p{Grapheme_Cluster_Break=ZWJ}"
    r"\p{Grapheme_Cluster_Break=SpacingMark}]"
)
_BREAKS_ALWAYS = regex.compile(
    r"[\p{Grapheme_Cluster_Break=Control}\p{Grapheme_Cluster_Break=CR}"
    r"\p{Grapheme_Cluster_Break=LF}]"
)
_NEWLINES = frozenset({"\n", "\r\n", "\r"})
_SENTENCE_ENDS = frozenset(".!?…")
_CLOSING_MARKS = frozenset(")]\"'”’»")
MAX_LANGUAGE_TAG = 20
MAX_FENCE_OVERHEAD = 3 * 10 + MAX_LANGUAGE_TAG + 2
"""The most characters a reopened and closed fence can add to one message."""


@dataclass(frozen=True, slots=True)
class OpenFence:
    """A fenced code block that is open: the length of its backtick run and its language tag."""

    ticks: int
    language: str = ""

    @property
    def opener(self) -> str:
        """The line that reopens this block in a new message."""
        return "`" * self.ticks + self.language

    @property
    def closer(self) -> str:
        """The line that closes this block."""
        return "`" * self.ticks


FenceState = OpenFence | None


def next_fence_state(state: FenceState, line: str) -> FenceState:
    """The fence state after one line (without its line break), CommonMark-style, backticks only."""
    if "```" not in line:
        return state
    match = FENCE_LINE.fullmatch(line.rstrip("\r"))
    if match is None:
        return state
    ticks, info = len(match.group(1)), match.group(2).strip()
    if state is None:
        words = info.split(maxsplit=1)
        language = words[0] if words and len(words[0]) <= MAX_LANGUAGE_TAG else ""
        return OpenFence(ticks, language)
    if not info and ticks >= state.ticks:
        return None
    return state


def fence_state_after(text: str, state: FenceState = None) -> FenceState:
    """The fence state after `text`; an unfinished last line counts as a whole line."""
    if "```" not in text:
        return state
    for line in text.split("\n"):
        state = next_fence_state(state, line)
    return state


class FenceTracker:
    """Follows the fence state of a growing text without rescanning what it has seen."""

    def __init__(self, state: FenceState = None) -> None:
        self._settled = state
        self._partial = ""

    def feed(self, text: str) -> None:
        """Take the next piece of text."""
        if "\n" not in text:
            self._partial += text
            return
        lines = (self._partial + text).split("\n")
        for line in lines[:-1]:
            self._settled = next_fence_state(self._settled, line)
        self._partial = lines[-1]

    @property
    def state(self) -> FenceState:
        """The fence state if the text ended here."""
        return next_fence_state(self._settled, self._partial)


def message_content(body: str, start: FenceState, end: FenceState, marker: str = "") -> str:
    """One message's text: reopened fence, the body, the marker, the closing fence if open.

    While streaming, the marker sits where the text grows (inside an open code block, before
    its temporary closer); after a fence line it goes on a line of its own, so the line keeps
    its meaning.
    """
    opener = start.opener + "\n" if start else ""
    if end is not None:
        return opener + body + marker + "\n" + end.closer
    if marker and FENCE_LINE.fullmatch(body.rsplit("\n", 1)[-1].rstrip("\r")):
        return opener + body + "\n" + marker.lstrip()
    return opener + body + marker


def rstrip_clusters(text: str) -> str:
    """`text` without trailing whitespace, never splitting a grapheme cluster."""
    kept = text.rstrip()
    size = len(kept)
    if 0 < size < len(text) and _PREPEND.match(kept[-1]) and not _BREAKS_ALWAYS.match(text[size]):
        return text[: size + 1]
    return kept


def leading_whitespace(text: str, *, in_fence: bool) -> int | None:
    """How many leading characters a message start drops, or None while only whitespace is known.

    Outside a code block all whitespace is dropped; inside one only line breaks, so indentation
    survives. A whitespace character that a combining mark attaches to is kept.
    """
    kept = text.lstrip("\r\n") if in_fence else text.lstrip()
    if not kept:
        return None
    size = len(text) - len(kept)
    if size and _JOINS_PREVIOUS.match(kept[0]) and not _BREAKS_ALWAYS.match(text[size - 1]):
        size -= 1
    return size


class Boundary(IntEnum):
    """Kinds of cut, best first; a cut of one kind also counts as every later kind."""

    PARAGRAPH = 0
    LINE = 1
    SENTENCE = 2
    SPACE = 3
    GRAPHEME = 4


@dataclass(frozen=True, slots=True)
class Cut:
    """Where a part ends: its body, the fence state at its end, where the rest starts."""

    body: str
    end: FenceState
    rest: int


@dataclass(frozen=True, slots=True)
class _Candidate:
    """A grapheme boundary: offset, end of the text before it without whitespace, and its kind."""

    offset: int
    body_end: int
    kind: Boundary


def _candidates(window: str) -> list[_Candidate]:
    """Every grapheme boundary in `window` with its kind, in order."""
    found: list[_Candidate] = []
    body_end, line_blank = 0, True
    last, before_last = "", ""
    for match in GRAPHEME.finditer(window):
        cluster = match.group()
        if cluster in _NEWLINES:
            kind = Boundary.PARAGRAPH if line_blank else Boundary.LINE
            line_blank = True
        elif cluster.isspace():
            ends_sentence = last[:1] in _SENTENCE_ENDS or (
                last[:1] in _CLOSING_MARKS and before_last[:1] in _SENTENCE_ENDS
            )
            kind = Boundary.SENTENCE if ends_sentence else Boundary.SPACE
        else:
            kind, body_end, line_blank = Boundary.GRAPHEME, match.end(), False
            last, before_last = cluster, last
        if body_end:
            found.append(_Candidate(match.end(), body_end, kind))
    return found


def _starts_with_closer(text: str, fence: OpenFence) -> bool:
    """Whether the first non-blank line of `text` closes `fence`."""
    for line in text[:200].split("\n"):
        if line.strip():
            return next_fence_state(fence, line) is None
    return False


def _cut_at(
    tail: str, start: FenceState, limit: int, candidate: _Candidate, tidy: bool
) -> Cut | None:
    """The cut at `candidate` if its message fits in `limit` (and, if tidy, looks right)."""
    body = tail[: candidate.body_end]
    end = fence_state_after(body, start)
    if len(message_content(body, start, end)) > limit:
        return None
    if tidy and end is not None and _starts_with_closer(tail[candidate.offset :], end):
        return None  # the next message would open with an empty code block
    return Cut(body, end, candidate.offset)


def _best_cut(tail: str, start: FenceState, limit: int, room: int, *, tidy: bool) -> Cut | None:
    """The last boundary of the best kind that fits, in the second half of the room."""
    candidates = [c for c in _candidates(tail[: room + 1]) if c.offset <= room]
    for level in Boundary:
        minimum = 1 if level is Boundary.GRAPHEME else room // 2
        for candidate in reversed(candidates):
            if candidate.kind > level:
                continue
            if candidate.offset < minimum:
                break
            cut = _cut_at(tail, start, limit, candidate, tidy)
            if cut is not None:
                return cut
    return None


def find_cut(tail: str, start: FenceState, limit: int) -> Cut:
    """Where to end a part whose text `tail` (starting at a grapheme boundary) is too long.

    Takes the last boundary of the best kind that fits within `limit` and lies in the second
    half of the room; falls back to worse kinds, then to any grapheme boundary, and only for a
    single cluster longer than the room to a plain character cut. Cuts just before the line
    that closes a code block are avoided when another cut exists.
    """
    room = limit - (len(start.opener) + 1 if start else 0)
    cut = _best_cut(tail, start, limit, room, tidy=True) or _best_cut(
        tail, start, limit, room, tidy=False
    )
    if cut is not None:
        return cut
    for size in range(min(room, len(tail)), 0, -1):
        cut = _cut_at(tail, start, limit, _Candidate(size, size, Boundary.GRAPHEME), False)
        if cut is not None:
            return cut
    raise ValueError(f"a message limit of {limit} leaves no room for text")
