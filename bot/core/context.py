"""Context that fits: the history sent with a request is cut to what the model can take.

The size of a request is estimated, not counted: about four characters a token (a fair
average for English with the usual tokenizers; other scripts use more tokens per character, so
the budget keeps a margin), a few tokens per item for the message framing, and a flat
`IMAGE_TOKENS` for each image. The budget of the input is the model's context length (from the
model list) less `MAX_OUTPUT_TOKENS`, less the instructions, times `SAFETY`.

Trimming drops the oldest whole exchanges (a question with its answer), never the newest one,
and it drops them in blocks, for providers' prompt caches (see `bot.core.history`): replaying
the conversation from its first item, each time it would pass the budget the oldest exchanges
go until it fits in half the budget. The cut therefore stays where it is while later turns add
to the end, so each request extends the previous one byte for byte, until the budget is passed
again. The stored history is not changed: a model with a larger context gets all of it.

When the API still refuses a request as too long (`context_length_exceeded`, or a 400 or 413
that says so) before any answer text came, `RetryShorter` asks once more with half of what was
sent (again whole exchanges, the newest kept), and the answer ends with a notice that earlier
messages were left out.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import aclosing
from typing import Any, Final

from bot.core.errors import LLMError, LLMStatusError, LLMStreamError
from bot.core.events import Completed, Failed, HistoryItem, Incomplete, StreamEvent, TextDelta
from bot.core.responses import EventSource

CHARS_PER_TOKEN: Final = 4
ITEM_TOKENS: Final = 8
"""Framing of one input message (role, type, label) in tokens, estimated."""
IMAGE_TOKENS: Final = 1000
"""One image in tokens, estimated (providers charge a few hundred to about 1,500)."""
SAFETY: Final = 0.9
"""The share of the computed budget used, for the error of the estimate."""
LEFT_OUT_NOTICE: Final = (
    "-# ✂️ Earlier messages were left out: the conversation is longer than this model can read."
)
_TOO_LONG: Final = re.compile(r"context[ _-]?(length|window)|maximum context|too many tokens", re.I)


def estimate_tokens(text: str) -> int:
    """The estimated tokens of a text: about four characters a token, rounded up."""
    return -(-len(text) // CHARS_PER_TOKEN)


def item_tokens(item: HistoryItem) -> int:
    """The estimated tokens one history item takes in a request."""
    return (
        ITEM_TOKENS
        + estimate_tokens(item.speaker)
        + estimate_tokens(item.text)
        + (IMAGE_TOKENS * len(item.images))
    )


def input_budget(context_tokens: int | None, max_output_tokens: int, instructions: str) -> int:
    """The estimated tokens the history may take; 0 when the context length is unknown."""
    if not context_tokens or context_tokens <= 0:
        return 0
    room = context_tokens - max_output_tokens - estimate_tokens(instructions) - ITEM_TOKENS
    return max(1, int(room * SAFETY))


def exchanges(items: Sequence[HistoryItem]) -> list[list[HistoryItem]]:
    """The items cut into exchanges: each starts at a user item that follows an answer."""
    groups: list[list[HistoryItem]] = []
    for item in items:
        if not groups or (item.role == "user" and groups[-1][-1].role == "assistant"):
            groups.append([item])
        else:
            groups[-1].append(item)
    return groups


def fit_history(items: Sequence[HistoryItem], budget: int) -> list[HistoryItem]:
    """The newest whole exchanges that fit the budget, cut in blocks (see the module docstring).

    A budget of 0 means no limit. The newest exchange always stays, even when it alone does not
    fit (the API then says so, and `RetryShorter` cannot help either).
    """
    if budget <= 0:
        return list(items)
    groups = exchanges(items)
    sizes = [sum(item_tokens(item) for item in group) for group in groups]
    head, total = 0, 0
    for newest, size in enumerate(sizes):
        total += size
        if total > budget:
            while head < newest and total > budget // 2:
                total -= sizes[head]
                head += 1
    return [item for group in groups[head:] for item in group]


def halve(items: Sequence[HistoryItem]) -> list[HistoryItem]:
    """The newest whole exchanges that fit in half the estimated size of `items`."""
    groups = exchanges(items)
    sizes = [sum(item_tokens(item) for item in group) for group in groups]
    total = sum(sizes)
    half = total // 2
    head = 0
    while head < len(groups) - 1 and total > half:
        total -= sizes[head]
        head += 1
    return [item for group in groups[head:] for item in group]


def is_context_error(error: LLMError) -> bool:
    """Whether the API refused the request because the input is longer than the model's context."""
    code = error.code if isinstance(error, LLMStatusError | LLMStreamError) else None
    if isinstance(code, str) and code.strip().lower() == "context_length_exceeded":
        return True
    status = error.status if isinstance(error, LLMStatusError) else None
    said = f"{error.detail} {error.provider_message}"
    return status in (400, 413) and bool(_TOO_LONG.search(said))


class RetryShorter:
    """A source that, when the request is refused as too long before any answer text, sends it
    once more with half of `items` (built by `build`); that answer's final event carries
    `LEFT_OUT_NOTICE`."""

    def __init__(
        self,
        client: EventSource,
        items: Sequence[HistoryItem],
        build: Callable[[list[HistoryItem]], dict[str, Any]],
    ) -> None:
        self._client = client
        self._items = list(items)
        self._build = build
        self.retried = False

    async def stream(self, request: dict[str, Any]) -> AsyncGenerator[StreamEvent, None]:
        """The events of the request, or of the shorter one when the first was too long."""
        shorter: list[HistoryItem] | None = None
        answered = False
        async with aclosing(self._client.stream(request)) as events:
            async for event in events:
                answered = answered or isinstance(event, TextDelta)
                if not answered and isinstance(event, Failed) and is_context_error(event.error):
                    candidate = halve(self._items)
                    if len(candidate) < len(self._items):
                        shorter = candidate
                        break
                yield event
        if shorter is None:
            return
        self.retried = True
        async with aclosing(self._client.stream(self._build(shorter))) as events:
            async for event in events:
                if isinstance(event, Completed | Incomplete | Failed):
                    yield dataclasses.replace(event, notices=(*event.notices, LEFT_OUT_NOTICE))
                else:
                    yield event
