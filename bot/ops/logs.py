"""Log set-up from LOG_LEVEL, LOG_FORMAT and LOG_CONTENT: plain lines or one JSON object per
line, each record carrying the turn's context (guild, channel, turn id, model) where known."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from bot.core.observe import CONTENT_LOG, current_log_context

TEXT_FORMAT = "%(levelname)s %(name)s: %(message)s"
"""As before LOG_FORMAT existed; journald and Docker add the time."""
_FIELDS = ("guild", "channel", "turn", "model")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, context, and any traceback."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = getattr(record, "log_context", None) or {}
        entry |= {name: context[name] for name in _FIELDS if name in context}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The plain format, with the turn's context appended in brackets where known."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        """The record as text, e.g. `... Answered ... [guild=1 channel=2 turn=ab12]`."""
        line = super().format(record)
        context = getattr(record, "log_context", None) or {}
        fields = " ".join(f"{name}={context[name]}" for name in _FIELDS if name in context)
        return f"{line} [{fields}]" if fields else line


class _ContextFilter(logging.Filter):
    """Stamps each record with the log context in force where it was made."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Attach the context; never drops a record."""
        record.log_context = dict(current_log_context())
        return True


def configure_logging(
    *, level: str, fmt: str, content: bool, stream: TextIO | None = None
) -> logging.Handler:
    """Send every log record to stderr (or `stream`) in the chosen format; returns the handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_ContextFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    numeric = logging.getLevelName(level)
    # discord.py is chatty at INFO (every RESUME, every rate limit it handles itself).
    logging.getLogger("discord").setLevel(max(numeric, logging.WARNING))
    CONTENT_LOG.setLevel(logging.INFO if content else logging.CRITICAL + 1)
    return handler
