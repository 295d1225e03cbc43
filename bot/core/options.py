"""How an answer is asked for beyond its conversation: reasoning effort, web search, fallback
models; and the parsers of these values, shared by the settings, per-channel choices and `ask`.

Each parser takes what a person typed and returns the value in its stored (canonical) form, or
raises `OptionError` whose message is one sentence saying what is accepted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

REASONING_EFFORTS: Final = ("none", "minimal", "low", "medium", "high")
MODEL_DEFAULT_EFFORT: Final = "auto"
"""The stored reasoning choice meaning "the model's own default": no `reasoning` field."""
MAX_FALLBACK_MODELS: Final = 2
"""OpenRouter refuses a `models` list of more than 3 entries: the primary and two fallbacks."""
MAX_WEB_RESULTS: Final = 10
NO_FALLBACKS: Final = "none"
"""The stored fallback choice meaning "no fallback models" (an empty value clears a choice)."""
_MODEL_SLUG = re.compile(r"[A-Za-z0-9][\w.\-]*/[\w.\-]+(?::[\w.\-]+)?")
_TRUE = frozenset({"true", "on", "yes", "1", "enable", "enabled"})
_FALSE = frozenset({"false", "off", "no", "0", "disable", "disabled"})


class OptionError(ValueError):
    """A value that cannot be used; the message is one sentence saying what is accepted."""


@dataclass(frozen=True, slots=True)
class AnswerOptions:
    """What a request asks for beside the conversation; the defaults add no request field.

    `reasoning_effort` is one of REASONING_EFFORTS, or None for the model's own default.
    """

    reasoning_effort: str | None = None
    web: bool = False
    web_max_results: int = 5
    fallback_models: tuple[str, ...] = ()

    def request_fields(self, model: str) -> dict[str, Any]:
        """The request fields these options add, in a fixed order and only when set, so
        requests with unchanged options keep byte-identical prefixes for prompt caching."""
        fields: dict[str, Any] = {}
        fallbacks = [name for name in self.fallback_models if name != model]
        if fallbacks:
            fields["models"] = [model, *fallbacks[:MAX_FALLBACK_MODELS]]
        if self.reasoning_effort is not None:
            reasoning = {"effort": self.reasoning_effort}
            if self.reasoning_effort != "none":  # no reasoning, nothing to summarise
                reasoning["summary"] = "auto"
            fields["reasoning"] = reasoning
        if self.web:
            fields["plugins"] = [{"id": "web", "max_results": self.web_max_results}]
        return fields


def parse_effort(raw: str) -> str:
    """A reasoning effort (case-insensitive), or "auto" for the model's own default."""
    value = raw.strip().lower()
    if value in {*REASONING_EFFORTS, MODEL_DEFAULT_EFFORT}:
        return value
    efforts = ", ".join(REASONING_EFFORTS)
    raise OptionError(f"The reasoning effort must be one of {efforts}, or auto (model default).")


def effort_or_none(stored: str) -> str | None:
    """The effort to request for a stored choice: None for "auto" (the model decides)."""
    return None if stored in {"", MODEL_DEFAULT_EFFORT} else stored


def parse_switch(raw: str, what: str = "This setting") -> str:
    """ "on" or "off" from on/off, true/false, yes/no, 1/0 (case-insensitive)."""
    value = raw.strip().lower()
    if value in _TRUE:
        return "on"
    if value in _FALSE:
        return "off"
    raise OptionError(f"{what} must be on or off.")


def switch_value(stored: str) -> bool:
    """Whether a stored on/off choice is on."""
    return stored == "on"


def parse_model_list(raw: str) -> str:
    """Fallback models as a canonical comma-separated list, or "none" for no fallbacks."""
    value = raw.strip()
    if value.lower() == NO_FALLBACKS or not value:
        return NO_FALLBACKS
    names = list(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))
    bad = [name for name in names if not _MODEL_SLUG.fullmatch(name)]
    if bad:
        raise OptionError(f"{bad[0]!r} is not a model id like openai/gpt-4o-mini.")
    if len(names) > MAX_FALLBACK_MODELS:
        raise OptionError(f"At most {MAX_FALLBACK_MODELS} fallback models can be given.")
    return ",".join(names)


def model_list(stored: str) -> tuple[str, ...]:
    """The fallback models of a stored list ("none" and "" are no fallbacks)."""
    if stored in {"", NO_FALLBACKS}:
        return ()
    return tuple(name for name in stored.split(",") if name)


def web_max_results(raw: int) -> int:
    """A number of web results the web plugin accepts."""
    if not 1 <= raw <= MAX_WEB_RESULTS:
        raise OptionError(f"The number of web results must be between 1 and {MAX_WEB_RESULTS}.")
    return raw
