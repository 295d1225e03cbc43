"""Command line: `python -m bot` runs the Discord bot; `ask` and `reset` work from a terminal."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from bot.config import ConfigError, load_settings


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `python -m bot`."""
    parser = argparse.ArgumentParser(prog="python -m bot", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    ask = sub.add_parser("ask", help="ask one question; the answer streams to stdout")
    ask.add_argument("text", help="the question")
    ask.add_argument("--channel", default="terminal", help="conversation name (default terminal)")
    ask.add_argument("--model", default=None, help="model to use instead of DEFAULT_MODEL")
    reset = sub.add_parser("reset", help="clear a terminal conversation's history")
    reset.add_argument("--channel", default="terminal", help="conversation name (default terminal)")
    return parser


def main(argv: Sequence[str]) -> int:
    """Parse arguments, load settings, run the chosen command; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        load_settings()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    if args.command is None:
        print("The Discord front-end is not built yet; use `python -m bot ask`.", file=sys.stderr)
        return 1
    print(f"`{args.command}` is not built yet.", file=sys.stderr)
    return 1
