"""Checks shared by the renderer tests: do the messages give back the answer text?"""

from __future__ import annotations

import sys
from functools import cache

import regex

from bot.core.splitting import GRAPHEME, fence_state_after

FENCE_ONLY = regex.compile(r"[ \t]*`{3,10}[^`]*")


def grapheme_boundaries(text: str) -> set[int]:
    """Every grapheme cluster boundary of `text`."""
    return {0} | {match.end() for match in GRAPHEME.finditer(text)}


def body_variants(message: str) -> list[str]:
    """The message, and the message without a fence line the renderer may have added."""
    lines = message.split("\n")
    variants = [message]
    drop_first = len(lines) > 1 and FENCE_ONLY.fullmatch(lines[0]) is not None
    drop_last = len(lines) > 1 and FENCE_ONLY.fullmatch(lines[-1]) is not None
    if drop_first:
        variants.append("\n".join(lines[1:]))
    if drop_last:
        variants.append("\n".join(lines[:-1]))
    if drop_first and drop_last and len(lines) > 2:
        variants.append("\n".join(lines[1:-1]))
    return variants


def text_spans(text: str, messages: list[str]) -> list[tuple[int, int]] | None:
    """Where each message's body lies in `text`, if the messages give back `text` exactly.

    Between and around the bodies only whitespace may be missing; each message may have an
    added fence line at its start and end. None when no such reading exists.
    """
    variants = [body_variants(message) for message in messages]
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 4 * len(messages) + 1000))

    @cache
    def match(position: int, index: int) -> tuple[tuple[int, int], ...] | None:
        if index == len(messages):
            return () if not text[position:].strip() else None
        first_text = position
        while first_text < len(text) and text[first_text].isspace():
            first_text += 1
        for body in variants[index]:
            for start in range(position, first_text + 1):
                if body and text.startswith(body, start):
                    rest = match(start + len(body), index + 1)
                    if rest is not None:
                        return ((start, start + len(body)), *rest)
        return None

    spans = match(0, 0)
    return None if spans is None else list(spans)


def assert_valid_message(content: str, limit: int) -> None:
    """One message as Discord would get it: 1..limit characters, not blank, fences balanced."""
    assert 1 <= len(content) <= limit, (len(content), content)
    assert content.strip(), repr(content)
    assert fence_state_after(content) is None, content


def assert_gives_back(text: str, messages: list[str]) -> None:
    """The messages hold `text` exactly, apart from added fence lines and whitespace at cuts."""
    spans = text_spans(text, messages)
    assert spans is not None, (text, messages)
    cuts = grapheme_boundaries(text)
    for start, end in spans:
        assert start in cuts, (start, text)
        assert end in cuts, (end, text)
