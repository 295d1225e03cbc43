"""Command line: `python -m bot` runs the Discord bot; `ask`, `reset` and `memory` work from a
terminal (whose conversations belong to a server of their own, "local")."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import aiohttp
from redis.exceptions import RedisError

from bot.config import ConfigError, Settings, load_settings, require
from bot.core.conversation import TurnRequest
from bot.core.errors import LLMError, ModelNotFoundError, one_line_notice, with_provider_message
from bot.core.events import (
    Citation,
    Completed,
    Failed,
    HistoryItem,
    Incomplete,
    ReasoningDelta,
    StatusLine,
    StreamEvent,
    TextDelta,
)
from bot.core.images import (
    MAX_IMAGES_PER_MESSAGE,
    FileImageSource,
    ImageError,
    ImageRef,
    PreloadedImages,
    count_refusal,
    model_refusal,
    read_image_file,
)
from bot.core.keys import LOCAL_GUILD, ConversationKey
from bot.core.models import ModelCatalog
from bot.core.options import AnswerOptions, effort_or_none, model_list, parse_effort
from bot.core.options import parse_model_list as parse_models
from bot.core.renderer import newest_summary_sentence, same_model
from bot.core.tools.context import Caller, Place, ToolContext
from bot.core.tools.memory_store import Fact
from bot.core.turnlock import TurnLockTimeout
from bot.ops.logs import configure_logging
from bot.wiring import StartupError, build_core, make_memory, make_store, open_redis

TERMINAL_CALLER = Caller(user_id="terminal", name="terminal", manage_server=True)
"""Who asks from a terminal: the owner, in the terminal's own server."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `python -m bot`."""
    parser = argparse.ArgumentParser(prog="python -m bot", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    ask = sub.add_parser("ask", help="ask one question; the answer streams to stdout")
    ask.add_argument("text", nargs="?", default="", help="the question (optional with --image)")
    ask.add_argument("--channel", default="terminal", help="conversation name (default terminal)")
    ask.add_argument("--model", default=None, help="model to use instead of DEFAULT_MODEL")
    ask.add_argument(
        "--image",
        action="append",
        default=[],
        metavar="PATH",
        help=f"an image to ask about (png, jpeg, webp, still gif); up to {MAX_IMAGES_PER_MESSAGE}",
    )
    ask.add_argument(
        "--reasoning",
        metavar="EFFORT",
        default=None,
        help="none, minimal, low, medium, high or auto (default REASONING_EFFORT)",
    )
    ask.add_argument(
        "--web",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="search the web and list the sources on stderr (default WEB_SEARCH)",
    )
    ask.add_argument(
        "--fallback",
        metavar="MODEL",
        action="append",
        default=None,
        help="a model to try when the first is unavailable; repeatable (default FALLBACK_MODELS)",
    )
    reset = sub.add_parser("reset", help="clear a terminal conversation's history")
    reset.add_argument("--channel", default="terminal", help="conversation name (default terminal)")
    sub.add_parser("check", help="check the settings, Redis, OpenRouter and Discord, then exit")
    sync = sub.add_parser("sync", help="register the slash commands with Discord now")
    sync.add_argument("--guild", type=int, default=None, help="a server id (default: global)")
    memory = sub.add_parser("memory", help="list every fact a server's memory keeps")
    memory.add_argument(
        "--guild", required=True, help='server id ("local" is the terminal\'s own server)'
    )
    return parser


def main(argv: Sequence[str]) -> int:
    """Parse arguments, load settings, run the chosen command; returns the exit status."""
    args = build_parser().parse_args(argv)
    # Until the settings say otherwise (LOG_LEVEL, LOG_FORMAT), only warnings and errors.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
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
    if args.command in {"check", "sync"}:
        from bot.ops.check import run_check_command

        return run_check_command(args)
    settings = load_settings()
    # In a terminal stderr carries one line per failure, so retries and the like stay quiet.
    quiet = args.command in {"ask", "reset"}
    configure_logging(
        level="ERROR" if quiet else settings.log_level,
        fmt=settings.log_format,
        content=settings.log_content,
    )
    if args.command == "ask":
        options = answer_options(settings, args)
        return asyncio.run(
            ask(settings, args.text, args.channel, args.model, options, images=args.image)
        )
    if args.command == "reset":
        return asyncio.run(reset(settings, args.channel))
    if args.command == "memory":
        return asyncio.run(list_memory(settings, args.guild))
    return run_discord(settings)


def _one_line(text: str) -> str:
    """Text folded onto one line."""
    return " ".join(text.split())


def run_discord(settings: Settings) -> int:
    """Run the Discord bot until it is stopped."""
    from bot.frontend.app import run_bot  # discord.py loads only when the bot runs

    require(settings.discord_token, "DISCORD_TOKEN")
    require(settings.openrouter_api_key, "OPENROUTER_API_KEY")
    return asyncio.run(run_bot(settings))


def answer_options(settings: Settings, args: argparse.Namespace) -> AnswerOptions:
    """The answer options of `ask`: its flags, else the settings; a bad flag is a ValueError
    of one sentence."""
    effort = (
        settings.reasoning
        if args.reasoning is None
        else effort_or_none(parse_effort(args.reasoning))
    )
    fallbacks = settings.fallbacks
    if args.fallback is not None:
        fallbacks = model_list(parse_models(",".join(args.fallback)))
    return AnswerOptions(
        reasoning_effort=effort,
        web=settings.web_search if args.web is None else args.web,
        web_max_results=settings.web_max_results,
        fallback_models=fallbacks,
    )


class TerminalPrinter:
    """The answer text to stdout as it arrives; the thinking status (its start, each new summary
    sentence, how long it took) to stderr. Raw reasoning is never printed."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._since: float | None = None
        self._answering = False
        self._summary = ""
        self._said = ""
        self.text = ""
        self.thought = False
        self.citations: dict[str, str] = {}

    def __call__(self, event: StreamEvent) -> None:
        """Print one event where it belongs."""
        if isinstance(event, ReasoningDelta):
            self._reasoning(event)
        elif isinstance(event, TextDelta):
            self._end_thinking()
            self._answering = True
            self.text += event.text
            sys.stdout.write(event.text)
            sys.stdout.flush()
        elif isinstance(event, Citation):
            self.citations.setdefault(event.url, event.title)
        elif isinstance(event, StatusLine):
            if event.text and sys.stderr.isatty():  # a tool's status, for a person watching
                _note(event.text.removeprefix("-# "))
        else:
            self._end_thinking()

    def _reasoning(self, event: ReasoningDelta) -> None:
        """Say that the model thinks, then each newest summary sentence once."""
        if self._answering:
            return
        if self._since is None:
            self._since = self._clock()
            _note("💭 Thinking…")
        if not event.summary:
            return
        self._summary += event.text
        sentence = one_line_notice(newest_summary_sentence(self._summary), 120)
        if sentence and sentence != self._said:
            self._said = sentence
            _note(f"💭 {sentence}")

    def _end_thinking(self) -> None:
        """Say how long the model thought, once."""
        if self._since is not None and not self.thought:
            self.thought = True
            _note(f"💭 Thought for {round(self._clock() - self._since)} s")


def _note(line: str) -> None:
    """One line on stderr."""
    print(line, file=sys.stderr, flush=True)


def _print_sources(citations: dict[str, str], limit: int) -> None:
    """The numbered sources, on stderr."""
    if not citations:
        return
    _note("Sources:")
    for number, (url, title) in enumerate(list(citations.items())[:limit], start=1):
        name = one_line_notice(title, 80) if title.strip() and "://" not in title else ""
        _note(f"{number}. {name} <{url}>" if name else f"{number}. <{url}>")


async def ask(
    settings: Settings,
    text: str,
    channel: str,
    model: str | None,
    options: AnswerOptions | None = None,
    *,
    images: Sequence[str] = (),
) -> int:
    """One turn in a terminal conversation; the answer streams to stdout, errors to stderr."""
    if not text.strip() and not images:
        raise StartupError("The question is empty.")
    if len(text) > settings.max_input_chars:
        raise StartupError(
            f"The question is {len(text)} characters; the limit is {settings.max_input_chars}."
        )
    loaded = _read_images(images, settings.max_image_bytes)
    key = ConversationKey.terminal(channel)
    require(settings.openrouter_api_key, "OPENROUTER_API_KEY")
    model = model or settings.default_model
    async with aiohttp.ClientSession() as session, open_redis(settings) as redis:
        catalog = ModelCatalog(session, redis, base_url=settings.openrouter_base_url)
        takes_images = await catalog.takes_images(model)
        if loaded and takes_images is False:
            image_models = await catalog.image_models()
            print(model_refusal(model, image_models, pick_with="--model"), file=sys.stderr)
            return 1
        core = build_core(settings, session, redis)
        # A model known to read only text gets the images of earlier turns as placeholders.
        source = FileImageSource(max_bytes=settings.max_image_bytes)
        memory = make_memory(settings, redis, per_server_switch=False)
        turn = TurnRequest(
            key=key,
            new_items=[HistoryItem(role="user", text=text, images=tuple(loaded))],
            user_key=f"terminal:{channel}",
            model=model,
            instructions=settings.system_prompt,
            images=PreloadedImages(loaded, source) if takes_images is not False else None,
            options=options or AnswerOptions(),
            tools=await memory.for_turn(ToolContext(Place.terminal(channel), TERMINAL_CALLER)),
        )
        printer = TerminalPrinter()
        result = await core.service.run_turn(turn, printer)
    if result.text and not result.text.endswith("\n"):
        sys.stdout.write("\n")
        sys.stdout.flush()
    _print_sources(printer.citations, turn.options.web_max_results)
    answered = result.final.model if isinstance(result.final, Completed | Incomplete) else None
    if answered and not same_model(turn.model, answered):
        _note(f"Answered by {one_line_notice(answered, 100)}")
    no_text = not result.text.strip()
    return _report_final(result.final, turn.model, no_text=no_text, thought=printer.thought)


def _read_images(paths: Sequence[str], max_bytes: int) -> dict[ImageRef, bytes]:
    """The checked images of `--image`, in order; StartupError with the first refusal."""
    refusal = count_refusal(len(paths))
    if refusal:
        raise StartupError(refusal)
    loaded: dict[ImageRef, bytes] = {}
    for path in paths:
        try:
            ref, data = read_image_file(Path(path), max_bytes=max_bytes)
        except ImageError as exc:
            raise StartupError(str(exc)) from None
        loaded[ref] = data
    return loaded


def _error_line(error: LLMError, model: str) -> str:
    """The user-facing line of an error (the provider's message included), for a terminal."""
    if isinstance(error, ModelNotFoundError):
        sentence = f"The model {model!r} does not exist on OpenRouter; pick another with --model."
        return with_provider_message(sentence, error.provider_message)
    return error.user_message


def _report_final(
    final: Completed | Incomplete | Failed,
    model: str,
    *,
    no_text: bool = False,
    thought: bool = False,
) -> int:
    """One line on stderr for anything but a normal end; the exit status."""
    for notice in final.notices:  # e.g. the answer could not be stored
        print(notice.removeprefix("-# ").removeprefix("⚠️ "), file=sys.stderr)
    if isinstance(final, Failed):
        print(_error_line(final.error, model), file=sys.stderr)
        return 1
    if isinstance(final, Incomplete):
        reasoned = thought or final.usage.reasoning_tokens > 0
        if final.reason == "max_output_tokens" and no_text and reasoned:
            print(
                "The model spent its whole output budget on reasoning and wrote no answer: "
                "raise MAX_OUTPUT_TOKENS or lower --reasoning.",
                file=sys.stderr,
            )
            return 1
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


def fact_lines(fact: Fact) -> list[str]:
    """A fact as the memory listing shows it: id, when, who, where, visibility; then its text."""
    who = f"{fact.by_name} ({fact.by_id})"
    return [
        f"#{fact.id}  {fact.told_at}  {who}  in {fact.where}  [{fact.visibility}]",
        f"    {fact.text}",
    ]


async def list_memory(settings: Settings, guild: str) -> int:
    """Print every fact of a server's memory, oldest first, with where it was told and who
    may hear it (the owner's view: nothing is filtered)."""
    async with open_redis(settings) as redis:
        memory = make_memory(settings, redis)
        facts = await memory.store.facts(guild)
        switched_on = await memory.store.enabled(guild)
    for fact in facts:
        print("\n".join(fact_lines(fact)))
    state = "on" if settings.memory_enabled and (switched_on or guild == LOCAL_GUILD) else "off"
    count = f"{len(facts)} fact" + ("" if len(facts) == 1 else "s")
    print(f"{count} in the memory of server {guild} (memory is {state}).", file=sys.stderr)
    return 0
