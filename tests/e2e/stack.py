"""The whole bot under test: redis-server, the Discord emulator, the scripted Responses server and
`python -m bot`, started together and always torn down together (also when a test fails)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.core.labels import speaker_tag
from tests.e2e.bot_process import BotProcess, bot_env
from tests.e2e.discord_emulator import DiscordEmulator
from tests.e2e.discord_emulator.model import Channel, Message, User
from tests.support.fake_responses import (
    Delay,
    FakeResponsesServer,
    RecordedRequest,
    SseStream,
    Step,
    Wait,
    sse_stream,
)
from tests.support.redis_server import RedisServer

MODELS = ("openai/gpt-4o-mini", "anthropic/claude-3.5-sonnet", "google/gemini-2.0-flash")
OTHER_BOT = "otherbot"
SLASH_COMMANDS = {
    *("ask", "chat", "reset", "stop", "help"),
    *("model", "system", "settings", "reasoning", "web", "fallbacks", "footer"),
    *("usage", "limits", "access", "forget", "memory"),
}


@dataclass
class BotStack:
    """The running parts of one end-to-end setup, and helpers to drive and read them."""

    emu: DiscordEmulator
    llm: FakeResponsesServer
    redis: RedisServer
    bot: BotProcess
    _names: itertools.count[int] = field(default_factory=itertools.count)

    def fresh_channel(self) -> Channel:
        """A text channel no other test has used (created before the bot connected)."""
        return self.emu.channel(f"room-{next(self._names)}")

    def label(self, name: str) -> str:
        """The speaker label the model sees for a member, e.g. "[Alice #0412]"."""
        return f"[{name.title()} {speaker_tag(str(self.emu.user(name).id))}]"

    def requests(self) -> list[RecordedRequest]:
        """The POST /responses requests the bot made since the last `script()`."""
        return [r for r in self.llm.requests if r.path.endswith("/responses")]

    def script(self, *scripts: SseStream | Any) -> None:
        """Forget earlier requests and queue these answers, served in order."""
        self.llm.reset(scripts)

    async def wait_for_final(
        self,
        channel_id: int,
        predicate: Any = None,
        *,
        count: int = 1,
        timeout: float = 20.0,  # noqa: ASYNC109 -- a deadline per wait keeps scenarios readable
    ) -> list[Message]:
        """Wait until `count` answers in a channel got Regenerate; their public messages.

        An answer loses Regenerate when a newer one finishes, so this counts every answer that
        ever carried it."""

        def done() -> bool:
            finished = [m for m in self.emu.bot_messages(channel_id) if had_button(m, "regen")]
            return len(finished) >= count and (predicate is None or predicate())

        await self.emu.wait_until(done, timeout)
        return [m for m in self.emu.bot_messages(channel_id) if not m.is_ephemeral]


def has_button(message: Message, kind: str) -> bool:
    """Whether a message carries a button whose custom_id starts with llm:<kind>:."""
    return any(
        str(button.get("custom_id", "")).startswith(f"llm:{kind}:")
        for row in message.components
        for button in row.get("components", [])
    )


def had_button(message: Message, kind: str) -> bool:
    """Whether a message carries, or once carried, an llm:<kind>: button."""
    revisions = [message.components] + [
        edit.body.get("components") or [] for edit in message.edits if isinstance(edit.body, dict)
    ]
    return any(
        str(button.get("custom_id", "")).startswith(f"llm:{kind}:")
        for rows in revisions
        for row in rows
        for button in row.get("components", [])
    )


def button_id(message: Message, kind: str) -> str:
    """The custom_id of a message's llm:<kind>: button."""
    for row in message.components:
        for button in row.get("components", []):
            if str(button.get("custom_id", "")).startswith(f"llm:{kind}:"):
                return str(button["custom_id"])
    raise LookupError(f"no {kind} button on message {message.id}")


def answer(
    deltas: Sequence[str], *, pace: float = 0.0, hold: Wait | None = None, **options: Any
) -> SseStream:
    """A streamed answer made of `deltas`, with `pace` seconds between them when given."""
    whole = sse_stream(list(deltas), **options)
    if not pace:
        return SseStream([whole], hold=hold)
    steps: list[Step] = []
    for piece in _pieces(whole, list(deltas)):
        steps += [piece, Delay(pace)]
    return SseStream(steps[:-1], hold=hold)


def paused_answer(deltas: Sequence[str], *, after: int, resume: asyncio.Event) -> SseStream:
    """A streamed answer that stops after its first `after` deltas until `resume` is set."""
    pieces = _pieces(sse_stream(list(deltas)), list(deltas))
    head, tail = pieces[:after], pieces[after:]
    return SseStream([b"".join(head), Wait(resume), b"".join(tail)])


def _pieces(whole: bytes, deltas: list[str]) -> list[bytes]:
    """A transcript cut after every delta's SSE event (the last piece holds the ending too)."""
    if not deltas:
        return [whole]
    pieces: list[bytes] = []
    rest = whole
    for delta in deltas:
        at = rest.find(b'"delta": ' + _json_str(delta))
        end = rest.find(b"\n\n", at) + 2
        pieces.append(rest[:end])
        rest = rest[end:]
    pieces[-1] += rest
    return pieces


def _json_str(text: str) -> bytes:
    """The JSON form of a string as encode_events writes it."""
    return json.dumps(text, ensure_ascii=False).encode()


def input_texts(request: RecordedRequest) -> list[str]:
    """Every text in a recorded request's `input`, in order."""
    texts: list[str] = []
    for item in request.body.get("input", []):
        content = item.get("content")
        if isinstance(content, str):
            texts.append(content)
            continue
        texts += [part.get("text", "") for part in content or [] if isinstance(part, dict)]
    return texts


@contextlib.asynccontextmanager
async def running_stack(
    workdir: Path,
    *,
    channels: int = 40,
    enforce_rate_limits: bool = False,
    message_content_enabled: bool = True,
    wait_ready: bool = True,
    **env: str,
) -> AsyncIterator[BotStack]:
    """Start redis, the emulator, the Responses server and the bot; stop them all on exit."""
    redis = RedisServer(workdir / "redis")
    redis.workdir.mkdir(parents=True, exist_ok=True)
    redis.start()
    try:
        async with (
            DiscordEmulator(
                enforce_rate_limits=enforce_rate_limits,
                message_content_enabled=message_content_enabled,
            ) as emu,
            FakeResponsesServer(models=MODELS) as llm,
        ):
            for number in range(channels):
                emu.world.add_channel(f"room-{number}")
            other_bot = User(emu.world.snowflakes.next(), OTHER_BOT, bot=True)
            emu.world.add_member(other_bot, [])
            environment = bot_env(
                discord_token=emu.token,
                discord_api_base=emu.api_base,
                discord_gateway_url=emu.gateway_url,
                redis_url=redis.url,
                openrouter_base_url=llm.url,
                **env,
            )
            async with BotProcess(environment, workdir / "bot") as bot:
                stack = BotStack(emu, llm, redis, bot)
                if wait_ready:
                    await wait_until_ready(stack)
                yield stack
    finally:
        redis.stop()


async def wait_until_ready(stack: BotStack) -> None:
    """Wait for the bot to identify and sync its slash commands."""
    emu = stack.emu

    def synced() -> bool:
        names = {c["name"] for scope in emu.rest.commands.values() for c in scope}
        return emu.gateway.ready and names >= SLASH_COMMANDS

    try:
        await emu.wait_until(synced, timeout=30)
    except TimeoutError:
        print(stack.bot.stderr_text())
        raise
