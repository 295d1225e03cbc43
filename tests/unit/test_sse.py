"""The SSE decoder: tables of byte chunks, and splits at any byte giving the same events."""

from __future__ import annotations

import json
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.core.sse import ServerSentEvent, SSEDecoder


def decode_chunks(chunks: list[bytes]) -> list[ServerSentEvent]:
    """Run a decoder over the chunks and the end of the stream."""
    decoder = SSEDecoder()
    events: list[ServerSentEvent] = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    events.extend(decoder.close())
    return events


def split_at(data: bytes, positions: list[int]) -> list[bytes]:
    """Cut bytes at the given positions (sorted, deduplicated)."""
    cuts = [0, *sorted(set(positions)), len(data)]
    return [data[a:b] for a, b in pairwise(cuts)]


def ev(data: str, event: str | None = None) -> ServerSentEvent:
    """A dispatched event without id or retry."""
    return ServerSentEvent(event=event, data=data)


JSON_WITH_SEPARATORS = json.dumps({"delta": "a\u2028b\u2029c\u0085d"}, ensure_ascii=False)

CASES: list[tuple[str, list[bytes], list[ServerSentEvent]]] = [
    ("lf", [b"data: a\n\ndata: b\n\n"], [ev("a"), ev("b")]),
    ("crlf", [b"data: a\r\n\r\ndata: b\r\n\r\n"], [ev("a"), ev("b")]),
    ("cr", [b"data: a\r\rdata: b\r\r"], [ev("a"), ev("b")]),
    (
        "crlf cut between chunks is one line end",
        [b"data: a\r", b"\ndata: b\r", b"\n\r\n"],
        [ev("a\nb")],
    ),
    ("cr at chunk end then blank cr", [b"data: a\r", b"\r"], [ev("a")]),
    (
        "utf-8 cut inside a char",
        [b"data: caf\xc3", b"\xa9 \xf0\x9f", b"\x98\x80\n\n"],
        [ev("café 😀")],
    ),
    ("multi data lines", [b"data: one\ndata: two\ndata:three\n\n"], [ev("one\ntwo\nthree")]),
    ("data without space", [b"data:x\n\n"], [ev("x")]),
    ("only first space stripped", [b"data:  x\n\n"], [ev(" x")]),
    ("event line", [b"event: response.created\ndata: {}\n\n"], [ev("{}", "response.created")]),
    (
        "comments between lines",
        [b": OPENROUTER PROCESSING\n\n:\ndata: a\n: \ndata: b\n\n"],
        [ev("a\nb")],
    ),
    ("no trailing blank line at eof", [b"data: last"], [ev("last")]),
    ("no trailing blank line after lf", [b"data: last\n"], [ev("last")]),
    ("done marker", [b"data: {}\n\ndata: [DONE]\n\n"], [ev("{}"), ev("[DONE]")]),
    (
        "raw line separators in json",
        [f"data: {JSON_WITH_SEPARATORS}\n\n".encode()],
        [ev(JSON_WITH_SEPARATORS)],
    ),
    ("event without data is dropped", [b"event: ping\n\ndata: a\n\n"], [ev("a")]),
    ("empty data line dispatches", [b"data:\n\n"], [ev("")]),
    ("bom at start", [b"\xef\xbb", b"\xbfdata: a\n\n"], [ev("a")]),
    ("unknown fields ignored", [b"foo: bar\nnocolon\ndata: a\n\n"], [ev("a")]),
    ("invalid utf-8 replaced", [b"data: \xff\n\n"], [ev("\ufffd")]),
]


@pytest.mark.parametrize(("chunks", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_table_of_chunks(chunks: list[bytes], expected: list[ServerSentEvent]) -> None:
    """Each chunk table decodes to exactly the expected events."""
    assert decode_chunks(chunks) == expected


def test_id_persists_and_retry_is_per_event() -> None:
    """The last event id carries over to later events; retry needs ASCII digits."""
    events = decode_chunks([b"id: 7\nretry: 1500\ndata: a\n\nretry: x\ndata: b\n\n"])
    assert events == [
        ServerSentEvent(event=None, data="a", id="7", retry=1500),
        ServerSentEvent(event=None, data="b", id="7", retry=None),
    ]


def test_comments_are_counted() -> None:
    """Keep-alive comments dispatch nothing but are counted."""
    decoder = SSEDecoder()
    assert decoder.feed(b": OPENROUTER PROCESSING\n\n:\n") == []
    assert decoder.comments == 2


def test_event_arrives_when_its_blank_line_does() -> None:
    """An event is returned by the feed() that completes it, not earlier."""
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n") == []
    assert decoder.feed(b"\n") == [ev("a")]
    assert decoder.close() == []


TRANSCRIPTS = [
    b': OPENROUTER PROCESSING\n\ndata: {"type":"response.created"}\n\n'
    b'data: {"delta":"h\xc3\xa9llo \xe2\x80\xa8 w\xf0\x9f\x98\x80rld"}\n\ndata: [DONE]\n\n',
    b'event: response.output_text.delta\r\ndata: {"delta":"x"}\r\n\r\n'
    b"event: response.completed\r\ndata: {}\r\n\r\n",
    b"data: a\rdata: b\r\rid: 1\rdata: c\r\r:\r\n",
    b"data:one\ndata: two\n\n: c\n\ndata: \xe2\x80\xa9\n\n",
]


@pytest.mark.parametrize("transcript", TRANSCRIPTS)
def test_split_at_every_byte_position(transcript: bytes) -> None:
    """Cutting a transcript in two at any byte decodes to the same events as whole."""
    whole = decode_chunks([transcript])
    assert whole
    for cut in range(1, len(transcript)):
        assert decode_chunks(split_at(transcript, [cut])) == whole, cut


def test_one_byte_chunks() -> None:
    """Feeding one byte at a time decodes to the same events as whole."""
    for transcript in TRANSCRIPTS:
        one_by_one = [transcript[i : i + 1] for i in range(len(transcript))]
        assert decode_chunks(one_by_one) == decode_chunks([transcript])


LINE_END = st.sampled_from(["\n", "\r", "\r\n"])
VALUE = st.text(
    alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=["Cs"]), max_size=12
)


@st.composite
def transcripts(draw: st.DrawFn) -> bytes:
    """Random SSE transcripts made of data/event/comment lines and mixed line ends."""
    parts: list[str] = []
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(st.sampled_from(["data", "event", "comment", "blank", "id"]))
        value = draw(VALUE)
        line = {"data": "data: ", "event": "event:", "comment": ":", "blank": "", "id": "id: "}
        parts.append(line[kind] + (value if kind != "blank" else "") + draw(LINE_END))
    return "".join(parts).encode()


@settings(max_examples=250, deadline=None)
@given(data=transcripts(), cuts=st.lists(st.integers(0, 400), max_size=8))
def test_random_splits_decode_the_same(data: bytes, cuts: list[int]) -> None:
    """Any transcript split at random byte positions decodes as when unsplit."""
    positions = [c % (len(data) + 1) for c in cuts]
    assert decode_chunks(split_at(data, positions)) == decode_chunks([data])


@settings(max_examples=200, deadline=None)
@given(
    texts=st.lists(st.text(max_size=20), min_size=1, max_size=4),
    end=LINE_END,
    cuts=st.lists(st.integers(0, 400), max_size=6),
)
def test_json_payloads_round_trip(texts: list[str], end: str, cuts: list[int]) -> None:
    """JSON data lines with any unicode (not ASCII-escaped) come back intact."""
    payloads = [json.dumps({"delta": t}, ensure_ascii=False) for t in texts]
    data = "".join(f"data: {p}{end}{end}" for p in payloads).encode()
    positions = [c % (len(data) + 1) for c in cuts]
    events = decode_chunks(split_at(data, positions))
    assert [json.loads(e.data)["delta"] for e in events] == texts
