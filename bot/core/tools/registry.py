"""Function tools: each has a name, a description, a JSON schema of its arguments, an async
handler with a timeout, and the status line shown while it runs.

A `Toolset` is the tools of one turn, in a fixed order (the request's `tools` must be the same
bytes every turn for providers' prompt caches), with the note the instructions gain when they
are on and the most rounds of calls one answer may make.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from bot.core.tools.context import ToolContext

MAX_TOOL_ROUNDS = 4
DEFAULT_TIMEOUT_SECONDS = 10.0

Handler = Callable[[Mapping[str, Any]], Awaitable[str]]
"""Runs a call with its parsed arguments; returns the output text the model reads."""


class ToolError(Exception):
    """A call the tool refuses (bad arguments, not allowed): the message goes to the model."""


@dataclass(frozen=True, slots=True)
class Tool:
    """One function tool and how to run it."""

    name: str
    description: str
    parameters: Mapping[str, Any]
    handler: Handler
    status: str = ""
    timeout: float = DEFAULT_TIMEOUT_SECONDS

    def spec(self) -> dict[str, Any]:
        """The tool as the request's `tools` lists it."""
        return {
            "type": "function",
            "name": self.name,
            "description": self.description,
            "parameters": dict(self.parameters),
        }


@dataclass(frozen=True, slots=True)
class Toolset:
    """The tools of one turn, in a fixed order, with the instructions' note about them."""

    tools: Sequence[Tool]
    instructions: str = ""
    max_rounds: int = MAX_TOOL_ROUNDS
    _by_name: dict[str, Tool] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Index the tools by name; two tools may not share one."""
        by_name = {tool.name: tool for tool in self.tools}
        if len(by_name) != len(self.tools):
            raise ValueError("Two tools share a name.")
        if self.max_rounds < 0:
            raise ValueError("max_rounds must not be negative.")
        object.__setattr__(self, "_by_name", by_name)

    def get(self, name: str) -> Tool | None:
        """The tool called `name`, if there is one."""
        return self._by_name.get(name)

    @property
    def names(self) -> list[str]:
        """The tools' names, in order."""
        return [tool.name for tool in self.tools]

    def specs(self) -> list[dict[str, Any]]:
        """The request's `tools` list, in the set's fixed order."""
        return [tool.spec() for tool in self.tools]


class TurnTools(Protocol):
    """Decides the tools of a turn from where it happens and who asks (None: no tools)."""

    async def for_turn(self, context: ToolContext) -> Toolset | None:
        """The toolset for this turn, or None when no tool is on here."""
        ...


def check_arguments(schema: Mapping[str, Any], arguments: Mapping[str, Any]) -> None:
    """Raise ToolError unless the arguments have every required property, each of the type and
    length its schema says (the small subset of JSON Schema the bot's tools use)."""
    properties: Mapping[str, Any] = schema.get("properties", {})
    for name in schema.get("required", []):
        if name not in arguments:
            raise ToolError(f"the argument {name!r} is missing")
    for name, value in arguments.items():
        rules = properties.get(name)
        if rules is None:
            continue
        if rules.get("type") == "string":
            if not isinstance(value, str):
                raise ToolError(f"the argument {name!r} must be a string")
            limit = rules.get("maxLength")
            if isinstance(limit, int) and len(value) > limit:
                raise ToolError(
                    f"the argument {name!r} is {len(value)} characters; the most is {limit}"
                )
