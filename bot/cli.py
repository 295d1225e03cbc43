"""Command line: `python -m bot` runs the Discord bot; `ask` and `reset` work from a terminal."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

import aiohttp
from redis.exceptions import RedisError

from bot.config import ConfigError, Settings, load_settings, require
from bot.core.conversation import TurnRequest
from bot.core.errors import LLMError, ModelNotFoundError, with_provider_message
from bot.core.events import Completed, Failed, HistoryItem, Incomplete, StreamEvent, TextDelta
from bot.core.keys import ConversationKey
from bot.core.turnlock import TurnLockTimeout
from bot.wiring import StartupError, build_core, make_store, open_redis


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
    # In a terminal stderr carries one line per failure, so retries and the like stay quiet.
    quiet = args.command in {"ask", "reset"}
    level = logging.ERROR if quiet else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return _run_command(args)
    except (ConfigError, StartupError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 1
    except RedisError as exc:
        print(f"Redis failed: {_one_line(str(exc))}", file=sys.stderr)
        return 1
    except TurnLockTimeout:
        print("Another answer in this conversation is taking too long; try again.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _run_command(args: argparse.Namespace) -> int:
    """Load the settings and run the command the arguments chose."""
    settings = load_settings()
    if args.command == "ask":
        return asyncio.run(ask(settings, args.text, args.channel, args.model))
    if args.command == "reset":
        return asyncio.run(reset(settings, args.channel))
    return run_discord(settings)


def _one_line(text: str) -> str:
    """Text folded onto one line."""
    return " ".join(text.split())


def run_discord(settings: Settings) -> int:
    """Run the Discord bot until it is stopped."""
    from bot.frontend.app import run_bot  # discord.py loads only when the bot runs

    require(settings.discord_token, "DISCORD_TOKEN")
    require(settings.openrouter_api_key, "OPENROUTER_API_KEY")
    logging.getLogger().setLevel(logging.INFO)
    logging.getLogger("discord").setLevel(logging.WARNING)
    return asyncio.run(run_bot(settings))


def _print_event(event: StreamEvent) -> None:
    """Write visible text to stdout as it arrives."""
    if isinstance(event, TextDelta):
        sys.stdout.write(event.text)
        sys.stdout.flush()


async def ask(settings: Settings, text: str, channel: str, model: str | None) -> int:
    """One turn in a terminal conversation; the answer streams to stdout, errors to stderr."""
    if not text.strip():
        raise StartupError("The question is empty.")
    if len(text) > settings.max_input_chars:
        raise StartupError(
            f"The question is {len(text)} characters; the limit is {settings.max_input_chars}."
        )
    key = ConversationKey.terminal(channel)
    require(settings.openrouter_api_key, "OPENROUTER_API_KEY")
    async with aiohttp.ClientSession() as session, open_redis(settings) as redis:
        core = build_core(settings, session, redis)
        turn = TurnRequest(
            key=key,
            new_items=[HistoryItem(role="user", text=text)],
            user_key=f"terminal:{channel}",
            model=model or settings.default_model,
            instructions=settings.system_prompt,
        )
        result = await core.service.run_turn(turn, _print_event)
    if result.text and not result.text.endswith("\n"):
        sys.stdout.write("\n")
    return _report_final(result.final, turn.model)


def _error_line(error: LLMError, model: str) -> str:
    """The user-facing line of an error (the provider's message included), for a terminal."""
    if isinstance(error, ModelNotFoundError):
        sentence = f"The model {model!r} does not exist on OpenRouter; pick another with --model."
        return with_provider_message(sentence, error.provider_message)
    return error.user_message


def _report_final(final: Completed | Incomplete | Failed, model: str) -> int:
    """One line on stderr for anything but a normal end; the exit status."""
    for notice in final.notices:  # e.g. the answer could not be stored
        print(notice.removeprefix("-# ").removeprefix("⚠️ "), file=sys.stderr)
    if isinstance(final, Failed):
        print(_error_line(final.error, model), file=sys.stderr)
        return 1
    if isinstance(final, Incomplete):
        if final.reason == "max_output_tokens":
            print("The answer was cut off at MAX_OUTPUT_TOKENS.", file=sys.stderr)
            return 0
        print(f"The answer stopped early ({final.reason}).", file=sys.stderr)
        return 1
    return 0


async def reset(settings: Settings, channel: str) -> int:
    """Forget a terminal conversation."""
    key = ConversationKey.terminal(channel)
    async with open_redis(settings) as redis:
        await make_store(settings, redis).clear(key)
    print(f"Forgot the conversation {channel!r}.", file=sys.stderr)
    return 0
