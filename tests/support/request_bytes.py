"""Request bodies compared as the bytes sent, for prompt caching: does one extend another?

A provider's prompt cache serves only a byte-identical prefix of an earlier request. A request
*extends* the previous one when, read from the raw JSON bodies:

- both have the same top-level fields in the same order, and every field but `input` has
  byte-identical JSON text;
- the previous `input` array's items, each as its exact JSON text, are the first items of the
  new `input` array (item for item, identical bytes); the new one may add items after them.
"""

from __future__ import annotations

import itertools
import json

_DECODER = json.JSONDecoder()
_WHITESPACE = " \t\n\r"


def _skip_space(text: str, position: int) -> int:
    """The position of the next character that is not JSON whitespace."""
    while position < len(text) and text[position] in _WHITESPACE:
        position += 1
    return position


def _expect(text: str, position: int, char: str) -> int:
    """The position after `char`, which must come next (after whitespace)."""
    position = _skip_space(text, position)
    if text[position : position + 1] != char:
        raise ValueError(f"expected {char!r} at {position} of the JSON text")
    return _skip_space(text, position + 1)


def _members(text: str, *, keyed: bool) -> list[tuple[str, str]]:
    """The (key, exact JSON text of the value) pairs of an object, or ("", text) of an array."""
    opening, closing = ("{", "}") if keyed else ("[", "]")
    position = _expect(text, 0, opening)
    members: list[tuple[str, str]] = []
    while text[position : position + 1] != closing:
        if members:
            position = _expect(text, position, ",")
        key = ""
        if keyed:
            key, position = _DECODER.raw_decode(text, position)
            position = _expect(text, position, ":")
        _, end = _DECODER.raw_decode(text, position)
        members.append((key, text[position:end]))
        position = _skip_space(text, end)
    return members


def top_level_fields(body: bytes) -> list[tuple[str, str]]:
    """Each top-level field of a JSON object body with the exact JSON text of its value."""
    return _members(body.decode("utf-8").strip(), keyed=True)


def input_items(body: bytes) -> list[str]:
    """The exact JSON text of each item of the body's `input` array."""
    [raw_input] = [value for name, value in top_level_fields(body) if name == "input"]
    return [value for _, value in _members(raw_input, keyed=False)]


def extends(previous: bytes, new: bytes) -> bool:
    """Whether the body `new` extends `previous` (see the module docstring)."""
    old_fields, new_fields = top_level_fields(previous), top_level_fields(new)
    if [name for name, _ in old_fields] != [name for name, _ in new_fields]:
        return False
    if [f for f in old_fields if f[0] != "input"] != [f for f in new_fields if f[0] != "input"]:
        return False
    old_items, new_items = input_items(previous), input_items(new)
    return new_items[: len(old_items)] == old_items


def extension_pattern(bodies: list[bytes]) -> list[bool]:
    """For each body after the first, whether it extends the one before it."""
    return [extends(a, b) for a, b in itertools.pairwise(bodies)]
