"""A message sink for tests: records every request with its (virtual) start time, checks limits.

It behaves like a chat channel: sends create messages, edits replace their content, a deleted
message makes edits raise `MessageGone`, and content Discord would reject (blank, longer than
2,000 characters) is recorded in `rejected` and raised as `SinkError`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from bot.core.renderer import MessageGone, SentMessage, SinkError

DISCORD_LIMIT = 2000


@dataclass(frozen=True, slots=True)
class Request:
    """One request the sink received."""

    time: float
    op: str
    bucket: str
    message_id: str = ""
    content: str = ""
    first: bool = False


@dataclass
class RecordingSink:
    """A recorder that takes `latency` (virtual) seconds per send/edit."""

    channel: str = "1"
    latency: float = 0.05
    bucket: str = ""
    requests: list[Request] = field(default_factory=list)
    contents: dict[str, str] = field(default_factory=dict)
    rejected: list[str] = field(default_factory=list)
    deleted: set[str] = field(default_factory=set)
    failures_to_inject: int = 0
    in_flight: int = 0
    max_in_flight: int = 0

    def __post_init__(self) -> None:
        """Default bucket: the channel's."""
        self.send_bucket = self.bucket or f"channel:{self.channel}"

    async def send(self, content: str, *, first: bool) -> SentMessage:
        """Create a message after `latency` seconds."""
        self._record("send", self.send_bucket, "", content, first)
        await self._work(content)
        message = SentMessage(f"{self.channel}-{len(self.contents)}", self.send_bucket)
        self.contents[message.id] = content
        return message

    async def edit(self, message: SentMessage, content: str) -> None:
        """Replace a message's content after `latency` seconds."""
        self._record("edit", message.bucket, message.id, content, False)
        if message.id in self.deleted:
            raise MessageGone(message.id)
        await self._work(content)
        self.contents[message.id] = content

    async def typing(self) -> None:
        """Record a typing indicator."""
        self._record("typing", f"{self.send_bucket}:typing", "", "", False)

    def messages(self) -> list[str]:
        """The current content of every message, in the order they were sent."""
        return list(self.contents.values())

    def writes(self) -> list[Request]:
        """The sends and edits, without typing."""
        return [request for request in self.requests if request.op != "typing"]

    def _record(self, op: str, bucket: str, message_id: str, content: str, first: bool) -> None:
        """Note a request at the current virtual time."""
        now = asyncio.get_running_loop().time()
        self.requests.append(Request(now, op, bucket, message_id, content, first))

    async def _work(self, content: str) -> None:
        """Take the request's time, then fail if Discord would have refused it."""
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.latency)
        finally:
            self.in_flight -= 1
        if self.failures_to_inject:
            self.failures_to_inject -= 1
            raise SinkError("injected failure")
        if not content.strip() or len(content) > DISCORD_LIMIT:
            self.rejected.append(content)
            raise SinkError("Discord would reject this content")
