"""An incremental Server-Sent Events decoder: network byte chunks in, whole events out.

It follows the event-stream interpretation of the HTML spec as a small state machine:
lines end at CR, LF or CRLF (also when a CRLF is cut between two chunks), UTF-8 is decoded
incrementally (a chunk may end inside a character), and lines are split ONLY on CR and LF,
never on U+2028, U+2029 or U+0085, which may appear raw inside JSON strings.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

_LINE_END = re.compile(r"\r\n|\r|\n")
_BOM = "\ufeff"


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One dispatched event: its `event:` type (if any), joined `data:` lines, id and retry."""

    event: str | None
    data: str
    id: str | None = None
    retry: int | None = None


class SSEDecoder:
    """Feed it byte chunks as they arrive; it returns the events each chunk completed.

    Comment lines (starting with ':') dispatch nothing but are counted in `comments`, so a
    caller can tell keep-alives arrived. Unlike the spec, `close()` dispatches a last event
    that lacks its closing blank line, because a stream cut right after its final event
    should not lose that event.
    """

    def __init__(self) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial_line: list[str] = []
        self._after_cr = False
        self._at_start = True
        self._event_type: str | None = None
        self._data: list[str] = []
        self._last_id: str | None = None
        self._retry: int | None = None
        self.comments = 0

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Decode one chunk of the stream and return the events it completed."""
        return self._consume_text(self._utf8.decode(chunk))

    def close(self) -> list[ServerSentEvent]:
        """Flush at end of stream: finish a last unterminated line and a last pending event."""
        events = self._consume_text(self._utf8.decode(b"", final=True))
        if self._partial_line:
            line = "".join(self._partial_line)
            self._partial_line = []
            self._process_line(line, events)
        self._dispatch(events)
        return events

    def _consume_text(self, text: str) -> list[ServerSentEvent]:
        """Split decoded text into lines on CR/LF and process every complete one."""
        events: list[ServerSentEvent] = []
        if not text:
            return events
        if self._at_start:
            self._at_start = False
            text = text.removeprefix(_BOM)
        if self._after_cr and text.startswith("\n"):
            text = text[1:]
        self._after_cr = False
        start = 0
        for line_end in _LINE_END.finditer(text):
            self._partial_line.append(text[start : line_end.start()])
            line = "".join(self._partial_line)
            self._partial_line = []
            self._process_line(line, events)
            start = line_end.end()
        if start < len(text):
            self._partial_line.append(text[start:])
        elif text.endswith("\r"):
            self._after_cr = True
        return events

    def _process_line(self, line: str, events: list[ServerSentEvent]) -> None:
        """Apply one line to the pending event; a blank line dispatches it."""
        if not line:
            self._dispatch(events)
            return
        if line.startswith(":"):
            self.comments += 1
            return
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event_type = value or None
        elif name == "id":
            if "\0" not in value:
                self._last_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)

    def _dispatch(self, events: list[ServerSentEvent]) -> None:
        """Emit the pending event if it has data, then reset the per-event fields."""
        if self._data:
            events.append(
                ServerSentEvent(
                    event=self._event_type,
                    data="\n".join(self._data),
                    id=self._last_id,
                    retry=self._retry,
                )
            )
        self._event_type = None
        self._data = []
        self._retry = None
