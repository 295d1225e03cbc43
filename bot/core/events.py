"""Typed events of one streamed model answer, and the history items a conversation is made of."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from bot.core.errors import LLMError
from bot.core.images import ImageRef


@dataclass(frozen=True, slots=True)
class TextDelta:
    """Visible answer text that arrived."""

    text: str


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    """The model is reasoning. `summary` text is the model's own summary of its reasoning, fit
    to show as a status; other text is the raw chain of thought, never shown. Neither is part
    of the answer or of the history. The text is empty when only the start of reasoning is
    known (a reasoning item began)."""

    text: str
    summary: bool = False


@dataclass(frozen=True, slots=True)
class Citation:
    """A web source the answer cites."""

    url: str
    title: str = ""


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts (and OpenRouter's cost, when sent) of a finished answer.

    `cached_tokens` is the part of `input_tokens` the provider served from its prompt cache.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cost: float | None = None
    cached_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Completed:
    """The answer finished normally."""

    message_id: str | None = None
    model: str | None = None
    usage: Usage = field(default_factory=Usage)
    notices: tuple[str, ...] = ()
    """Lines the bot adds under the answer (e.g. that earlier messages were left out)."""


STOPPED_REASON = "stopped"
"""The `Incomplete.reason` of an answer stopped on purpose (Stop, /stop, shutdown)."""


@dataclass(frozen=True, slots=True)
class Incomplete:
    """The answer stopped early: `reason` is e.g. "max_output_tokens" or "content_filter"."""

    reason: str
    message_id: str | None = None
    model: str | None = None
    usage: Usage = field(default_factory=Usage)
    notices: tuple[str, ...] = ()
    """Lines the bot adds under the answer (see `Completed.notices`)."""


@dataclass(frozen=True, slots=True)
class Failed:
    """The answer failed; text that arrived before stays valid (under `message_id`, when the
    API had named its output message)."""

    error: LLMError
    message_id: str | None = None
    notices: tuple[str, ...] = ()
    """Lines the bot adds under the answer (see `Completed.notices`)."""


@dataclass(frozen=True, slots=True)
class FunctionCall:
    """A function tool call the model finished writing: the `function_call` item's fields as
    the API sent them (`arguments` is the JSON text, not yet parsed)."""

    call_id: str
    name: str
    arguments: str
    item_id: str = ""

    def as_input(self) -> dict[str, Any]:
        """The `function_call` input item that sends this call back, exactly as received."""
        item: dict[str, Any] = {"type": "function_call"}
        if self.item_id:
            item["id"] = self.item_id
        item.update(call_id=self.call_id, name=self.name, arguments=self.arguments)
        return item


@dataclass(frozen=True, slots=True)
class StatusLine:
    """A passing line shown under the answer while something runs (e.g. `-# 🧠 Remembering…`
    while a tool works); empty text takes it away. Never part of the answer."""

    text: str


StreamEvent = (
    TextDelta
    | ReasoningDelta
    | Citation
    | FunctionCall
    | StatusLine
    | Completed
    | Incomplete
    | Failed
)
FinalEvent = Completed | Incomplete | Failed

Role = Literal["user", "assistant"]
ItemStatus = Literal["completed", "incomplete"]


@dataclass(frozen=True, slots=True)
class HistoryItem:
    """One stored turn of a conversation.

    User items carry the speaker's display name (shown to the model as a `[Name]: ` prefix);
    assistant items carry the API's output message id and status, which the API requires when
    the item is sent back. `ref` is the platform message id it came from, when there is one
    (for an answer, the first message that shows it). `author` is the platform user id of a
    user item's sender: it is never sent to the model (the label shows only a hash of it) and
    lets a member's messages be found and forgotten.
    `images` are the images a user item carried, by reference (see bot.core.images).
    """

    role: Role
    text: str
    speaker: str = ""
    item_id: str = ""
    status: ItemStatus = "completed"
    ref: str = ""
    author: str = ""
    images: tuple[ImageRef, ...] = ()
