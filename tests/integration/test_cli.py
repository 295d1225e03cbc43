"""`python -m bot ask/reset` as real subprocesses against a fake Responses API and the test redis.

The fake server runs in the test's own event loop, so it keeps serving while the subprocess
runs; each subprocess gets a clean environment and a temporary working directory (no .env).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp import web

from bot.core.events import HistoryItem
from bot.core.history import HistoryStore
from bot.core.keys import ConversationKey
from tests.support import image_bytes
from tests.support.fake_responses import (
    ABORT,
    FakeResponsesServer,
    PlainResponse,
    Script,
    SseStream,
    Wait,
    answer_events,
    encode_events,
    error_response,
    sse_stream,
)
from tests.support.redis_server import RedisServer, free_port
from tests.support.request_bytes import extends

API_KEY = "sk-or-v1-cli-test-secret-0123456789"
GUARD_SECONDS = 60  # only stops a broken test from hanging; never reached when things work
NO_WAIT = {"Retry-After": "0"}


class SignallingServer(FakeResponsesServer):
    """The fake Responses API, also setting `arrived` whenever a request comes in."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived = asyncio.Event()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        """Signal the arrival, then play the script as usual."""
        self.arrived.set()
        return await super()._handle(request)


@dataclass(frozen=True)
class Finished:
    """What a finished CLI process left behind."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        """The lines written to stderr."""
        return self.stderr.splitlines()


class Cli:
    """Starts `python -m bot` subprocesses in a clean environment and temporary directory."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.cwd = cwd
        self.env = env
        self.started: list[asyncio.subprocess.Process] = []

    async def start(self, *args: str, **env: str | None) -> asyncio.subprocess.Process:
        """Start the CLI with `args`; `env` overrides variables (None removes one)."""
        merged = {**self.env, **env}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            *args,
            cwd=self.cwd,
            env={name: value for name, value in merged.items() if value is not None},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        self.started.append(proc)
        return proc

    @staticmethod
    async def finish(proc: asyncio.subprocess.Process) -> Finished:
        """Wait for the process; the API key must appear in none of its output."""
        async with asyncio.timeout(GUARD_SECONDS):
            out, err = await proc.communicate()
        assert proc.returncode is not None
        done = Finished(proc.returncode, out.decode(), err.decode())
        assert API_KEY not in done.stdout + done.stderr
        assert "Traceback" not in done.stderr
        return done

    async def run(self, *args: str, **env: str | None) -> Finished:
        """Run the CLI to its end."""
        return await self.finish(await self.start(*args, **env))


@pytest.fixture
async def server() -> AsyncIterator[SignallingServer]:
    """The scripted Responses API, serving from this test's event loop."""
    async with SignallingServer() as fake:
        yield fake


@contextlib.asynccontextmanager
async def cli_runner(
    tmp_path: Path, server: SignallingServer, redis_server: RedisServer, **settings: str
) -> AsyncIterator[Cli]:
    """A CLI runner wired to the fake server and the test redis (plus `settings`); any process
    still running at the end is killed."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "REDIS_URL": redis_server.url,
        "OPENROUTER_BASE_URL": server.url,
        "OPENROUTER_API_KEY": API_KEY,
        **settings,
    }
    runner = Cli(tmp_path, env)
    try:
        yield runner
    finally:
        for proc in runner.started:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()


@pytest.fixture
async def cli(
    tmp_path: Path,
    server: SignallingServer,
    redis_server: RedisServer,
    redis_client: aioredis.Redis,
) -> AsyncIterator[Cli]:
    """A CLI runner wired to the fake server and the (emptied) test redis."""
    async with cli_runner(tmp_path, server, redis_server) as runner:
        yield runner


@pytest.fixture
def store(redis_client: aioredis.Redis) -> HistoryStore:
    """A history store on the test redis, to read what the CLI stored."""
    return HistoryStore(redis_client, max_items=40, max_chars=40_000, ttl_seconds=600)


def answer(deltas: list[str], message_id: str, **options: Any) -> SseStream:
    """A whole streamed answer."""
    return SseStream([sse_stream(deltas, message_id=message_id, **options)])


def opening(deltas: list[str], message_id: str) -> bytes:
    """The start of an answer with its text but no end."""
    events = answer_events(deltas, message_id=message_id, end="none")
    return encode_events(events[:-1], style="openai")


def closing(message_id: str) -> bytes:
    """The end of an answer begun by `opening` (item done, response completed)."""
    events = answer_events(["unused"], message_id=message_id)
    return encode_events(events[-2:], style="openai")


def request_body(server: FakeResponsesServer, index: int) -> dict[str, Any]:
    """The JSON body of the index-th request the server received."""
    body = server.requests[index].body
    assert isinstance(body, dict)
    return body


def texts(items: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(role, text) of each input item."""
    return [(item["role"], item["content"][0]["text"]) for item in items]


def assert_well_formed(items: list[dict[str, Any]]) -> None:
    """Whole exchanges: a user item first, each answer after a question, with id and status."""
    assert items
    assert items[0]["role"] == "user"
    for before, item in pairwise(items):
        if item["role"] == "assistant":
            assert before["role"] == "user"
    for item in items:
        assert item["type"] == "message"
        if item["role"] == "assistant":
            assert item["id"].startswith("msg_")
            assert item["status"] in {"completed", "incomplete"}


def one_line(done: Finished) -> str:
    """The single stderr line of a failed run."""
    assert len(done.error_lines) == 1, done.stderr
    return done.error_lines[0]


async def test_ask_streams_the_answer_and_exits_zero(
    cli: Cli, server: SignallingServer, store: HistoryStore
) -> None:
    """`ask` prints the answer, exits 0, and stores the exchange under its channel."""
    server.push(answer(["Hello", ", ", "world"], "msg_hello"))
    done = await cli.run("ask", "Say hello", "--channel", "greet")
    assert (done.returncode, done.stdout, done.stderr) == (0, "Hello, world\n", "")
    assert request_body(server, 0)["input"] == [
        {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "Say hello"}],
        }
    ]
    assert server.requests[0].headers["Authorization"] == f"Bearer {API_KEY}"
    assert await store.load(ConversationKey.terminal("greet")) == [
        HistoryItem(role="user", text="Say hello"),
        HistoryItem(role="assistant", text="Hello, world", item_id="msg_hello"),
    ]


async def test_second_ask_carries_the_first_exchange(cli: Cli, server: SignallingServer) -> None:
    """A second `ask` in the same channel sends the first answer with its id and status."""
    server.push(answer(["Four"], "msg_four"), answer(["Eight"], "msg_eight"))
    assert (await cli.run("ask", "2+2?", "--channel", "math")).returncode == 0
    done = await cli.run("ask", "Double it?", "--channel", "math")
    assert (done.returncode, done.stdout) == (0, "Eight\n")
    sent = request_body(server, 1)["input"]
    assert sent[1] == {
        "type": "message",
        "role": "assistant",
        "id": "msg_four",
        "status": "completed",
        "content": [{"type": "output_text", "text": "Four", "annotations": []}],
    }
    assert texts(sent) == [("user", "2+2?"), ("assistant", "Four"), ("user", "Double it?")]


async def test_channels_are_separate(cli: Cli, server: SignallingServer) -> None:
    """An `ask` in another channel does not see the first channel's history."""
    server.push(answer(["A"], "msg_a"), answer(["B"], "msg_b"))
    await cli.run("ask", "one", "--channel", "left")
    await cli.run("ask", "two", "--channel", "right")
    assert texts(request_body(server, 1)["input"]) == [("user", "two")]


async def test_model_option_is_sent(cli: Cli, server: SignallingServer) -> None:
    """--model picks the model of the request; without it DEFAULT_MODEL is used."""
    server.push(answer(["x"], "msg_1"), answer(["y"], "msg_2"))
    await cli.run("ask", "Hi", "--model", "anthropic/claude-test")
    await cli.run("ask", "Hi", "--channel", "other", DEFAULT_MODEL="meta/default-test")
    assert request_body(server, 0)["model"] == "anthropic/claude-test"
    assert request_body(server, 1)["model"] == "meta/default-test"
    assert request_body(server, 0)["stream"] is True


def _retried(script: PlainResponse) -> list[Script]:
    """The same retryable error three times: the first try and both retries."""
    return [script, script, script]


ERROR_CASES = [
    pytest.param(
        [error_response(401, "No auth credentials found")],
        "",
        "The bot's OpenRouter API key was refused; the bot owner must fix it."
        " (No auth credentials found)",
        id="401",
    ),
    pytest.param(
        [error_response(402, "Insufficient credits")],
        "",
        "The bot's OpenRouter account is out of credits. (Insufficient credits)",
        id="402",
    ),
    pytest.param(
        [error_response(403, "flagged", metadata={"reasons": ["violence", "hate"]})],
        "",
        "The request was blocked by moderation: violence, hate. (flagged)",
        id="403",
    ),
    pytest.param(
        [error_response(404, "No endpoints found for no/such-model")],
        "",
        "The model 'openai/gpt-4o-mini' does not exist on OpenRouter; pick another with --model."
        " (No endpoints found for no/such-model)",
        id="404",
    ),
    pytest.param(
        _retried(error_response(429, "Rate limit exceeded", headers=NO_WAIT)),
        "",
        "The model provider is rate-limited right now; try again in a moment."
        " (Rate limit exceeded)",
        id="429",
    ),
    pytest.param(
        _retried(error_response(500, "Internal Server Error", headers=NO_WAIT)),
        "",
        "The model provider had an error. Please try again. (Internal Server Error)",
        id="500",
    ),
    pytest.param(
        [SseStream([opening(["Partial ", "answer"], "msg_cut"), ABORT])],
        "Partial answer\n",
        "The model's answer broke off with an error.",
        id="mid-stream-cut",
    ),
    pytest.param(
        [answer(["Half"], "msg_failed", end="failed")],
        "Half\n",
        "The model provider had an error. Please try again. (provider exploded)",
        id="response-failed",
    ),
    pytest.param(
        [SseStream([opening(["Ended ", "early"], "msg_early")])],
        "Ended early\n",
        "The model's answer broke off with an error.",
        id="ended-early",
    ),
    pytest.param(
        [PlainResponse(200, b"<html>gateway</html>", content_type="text/html")],
        "",
        "The model's answer broke off with an error.",
        id="not-sse",
    ),
    pytest.param(
        [
            SseStream(
                [
                    opening(["Some "], "msg_long"),
                    encode_events(
                        [
                            {
                                "type": "error",
                                "error": {
                                    "code": "context_length_exceeded",
                                    "message": "Ping @everyone\nand <@123>: 9000 > 8192 tokens",
                                },
                            }
                        ],
                        style="openai",
                    ),
                ]
            )
        ],
        "Some \n",
        "The conversation is too long for this model; use /reset or pick a model with a bigger"
        " context. (Ping @\u200beveryone and <@\u200b123>: 9000 > 8192 tokens)",
        id="stream-error-says-why",
    ),
]


@pytest.mark.parametrize(("scripts", "stdout", "message"), ERROR_CASES)
async def test_every_error_is_one_line_and_history_stays_valid(
    cli: Cli, server: SignallingServer, scripts: list[Script], stdout: str, message: str
) -> None:
    """An error prints one sentence on stderr, keeps partial text on stdout, exits non-zero,
    and the next `ask` in the channel succeeds with a well-formed request."""
    server.push(*scripts, answer(["Recovered"], "msg_next"))
    failed = await cli.run("ask", "First question", "--channel", "errors")
    assert failed.returncode != 0
    assert failed.stdout == stdout
    assert one_line(failed) == message
    done = await cli.run("ask", "Second question", "--channel", "errors")
    assert (done.returncode, done.stdout, done.stderr) == (0, "Recovered\n", "")
    sent = request_body(server, len(server.requests) - 1)["input"]
    assert_well_formed(sent)
    expected = [("user", "First question")]
    if stdout:
        expected.append(("assistant", stdout.rstrip("\n")))
        assert sent[1]["status"] == "incomplete"
    assert texts(sent) == [*expected, ("user", "Second question")]


async def test_cut_off_at_max_output_tokens_is_noted_but_succeeds(
    cli: Cli, server: SignallingServer
) -> None:
    """An answer cut at MAX_OUTPUT_TOKENS prints its text, one note on stderr, and exits 0."""
    server.push(answer(["Long"], "msg_long", end="incomplete"))
    done = await cli.run("ask", "Go on", MAX_OUTPUT_TOKENS="64")
    assert (done.returncode, done.stdout) == (0, "Long\n")
    assert one_line(done) == "The answer was cut off at MAX_OUTPUT_TOKENS."
    assert request_body(server, 0)["max_output_tokens"] == 64


async def test_missing_api_key_is_one_line(cli: Cli, server: SignallingServer) -> None:
    """Without OPENROUTER_API_KEY `ask` names the variable and exits 1 without a request."""
    done = await cli.run("ask", "Hi", OPENROUTER_API_KEY=None)
    assert done.returncode == 1
    assert done.stdout == ""
    assert "OPENROUTER_API_KEY" in one_line(done)
    assert server.requests == []


async def test_malformed_setting_names_the_variable(cli: Cli) -> None:
    """A setting that does not parse stops start-up with one line naming it."""
    done = await cli.run("ask", "Hi", MAX_OUTPUT_TOKENS="abc")
    assert done.returncode == 1
    line = one_line(done)
    assert "MAX_OUTPUT_TOKENS" in line
    assert "abc" not in line


async def test_malformed_url_setting_does_not_echo_secrets(cli: Cli) -> None:
    """A bad base URL is named, and neither its value nor the key is shown."""
    done = await cli.run("ask", "Hi", OPENROUTER_BASE_URL=f"ftp://{API_KEY}@example")
    assert done.returncode == 1
    assert "OPENROUTER_BASE_URL" in one_line(done)


async def test_redis_down_is_one_line(cli: Cli) -> None:
    """With nothing listening at REDIS_URL, `ask` says where it looked and exits 1."""
    port = free_port()
    done = await cli.run("ask", "Hi", REDIS_URL=f"redis://:{API_KEY}@127.0.0.1:{port}/0")
    assert done.returncode == 1
    assert one_line(done) == f"Could not connect to Redis at 127.0.0.1:{port}: is it running?"


async def test_reset_with_redis_down_is_one_line(cli: Cli) -> None:
    """`reset` reports an unreachable Redis the same way."""
    port = free_port()
    done = await cli.run("reset", "--channel", "x", REDIS_URL=f"redis://127.0.0.1:{port}/0")
    assert done.returncode == 1
    assert one_line(done).startswith("Could not connect to Redis at 127.0.0.1:")


async def test_empty_question_is_refused(cli: Cli, server: SignallingServer) -> None:
    """A blank question is refused with one line and no request."""
    done = await cli.run("ask", "  \n ")
    assert done.returncode != 0
    assert one_line(done) == "The question is empty."
    assert server.requests == []


async def test_too_long_question_is_refused(cli: Cli, server: SignallingServer) -> None:
    """A question over MAX_INPUT_CHARS is refused with one line naming the limit."""
    done = await cli.run("ask", "x" * 11, MAX_INPUT_CHARS="10")
    assert done.returncode != 0
    assert "10" in one_line(done)
    assert server.requests == []


async def test_reset_clears_the_channel(
    cli: Cli, server: SignallingServer, store: HistoryStore
) -> None:
    """`reset --channel` forgets that channel's history; the next ask starts afresh."""
    server.push(answer(["One"], "msg_one"), answer(["Two"], "msg_two"), answer(["3"], "msg_3"))
    await cli.run("ask", "First", "--channel", "gone")
    await cli.run("ask", "Kept", "--channel", "kept")
    done = await cli.run("reset", "--channel", "gone")
    assert done.returncode == 0
    assert len(done.error_lines) == 1
    assert await store.load(ConversationKey.terminal("gone")) == []
    assert len(await store.load(ConversationKey.terminal("kept"))) == 2
    await cli.run("ask", "Again", "--channel", "gone")
    assert texts(request_body(server, 2)["input"]) == [("user", "Again")]


@pytest.mark.parametrize(
    ("env", "named"),
    [
        pytest.param({"DISCORD_TOKEN": None}, "DISCORD_TOKEN", id="no-token"),
        pytest.param(
            {"DISCORD_TOKEN": API_KEY, "OPENROUTER_API_KEY": None},
            "OPENROUTER_API_KEY",
            id="no-api-key",
        ),
        pytest.param({"DISCORD_TOKEN": API_KEY, "DEV_GUILD_ID": "abc"}, "DEV_GUILD_ID", id="bad"),
    ],
)
async def test_bot_start_up_errors_are_one_line(
    cli: Cli, env: dict[str, str | None], named: str
) -> None:
    """Plain `python -m bot` with a missing or bad setting names it, exits 1, shows no secret."""
    done = await cli.run(**env)
    assert done.returncode == 1
    assert named in one_line(done)


@contextlib.contextmanager
def cancelling(task: asyncio.Task[None]) -> Iterator[asyncio.Task[None]]:
    """Cancel a helper task when the block ends."""
    try:
        yield task
    finally:
        task.cancel()


async def watch_lock_contention(
    url: str, lock_key: str, first_token: str, seen: asyncio.Event
) -> None:
    """Set `seen` when Redis gets a SET on the lock key with a token other than the holder's."""
    client = aioredis.Redis.from_url(url)
    try:
        async with client.monitor() as monitor:
            async for info in monitor.listen():
                words = info["command"].split()
                if words[:2] == ["SET", lock_key] and words[2] != first_token:
                    seen.set()
    finally:
        await client.aclose()


async def test_two_concurrent_asks_leave_both_turns_whole(
    cli: Cli,
    server: SignallingServer,
    store: HistoryStore,
    redis_server: RedisServer,
    redis_client: aioredis.Redis,
) -> None:
    """Two `ask` processes in one channel run one after the other, each answer after its question.

    The first answer is held until the second process is seen waiting for the turn lock (or,
    if the lock were broken, reaching the server), so the two really overlap.
    """
    key = ConversationKey.terminal("shared")
    release = asyncio.Event()
    server.push(
        SseStream([opening(["From A"], "msg_a"), Wait(release), closing("msg_a")]),
        answer(["From B"], "msg_b"),
    )
    first = await cli.start("ask", "Question A", "--channel", "shared")
    assert first.stdout is not None
    async with asyncio.timeout(GUARD_SECONDS):
        assert await first.stdout.readexactly(len("From A")) == b"From A"
    holder_token = (await redis_client.get(key.lock)).decode()
    server.arrived.clear()
    contended = asyncio.Event()
    watcher = watch_lock_contention(redis_server.url, key.lock, holder_token, contended)
    with cancelling(asyncio.create_task(watcher)):
        second = await cli.start("ask", "Question B", "--channel", "shared")
        waits = [asyncio.create_task(e.wait()) for e in (contended, server.arrived)]
        async with asyncio.timeout(GUARD_SECONDS):
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for waiting in waits:
            waiting.cancel()
    release.set()
    done_a, done_b = await cli.finish(first), await cli.finish(second)
    assert (done_a.returncode, "From A" + done_a.stdout) == (0, "From A\n")
    assert (done_b.returncode, done_b.stdout) == (0, "From B\n")
    assert [(i.role, i.text) for i in await store.load(key)] == [
        ("user", "Question A"),
        ("assistant", "From A"),
        ("user", "Question B"),
        ("assistant", "From B"),
    ]
    assert texts(request_body(server, 0)["input"]) == [("user", "Question A")]
    second_input = request_body(server, 1)["input"]
    assert_well_formed(second_input)
    assert texts(second_input) == [
        ("user", "Question A"),
        ("assistant", "From A"),
        ("user", "Question B"),
    ]
    assert second_input[1]["id"] == "msg_a"


async def test_unicode_answer_reaches_stdout_whole(cli: Cli, server: SignallingServer) -> None:
    """Non-ASCII text (accents, emoji, CJK) streams out as UTF-8 even without a locale."""
    server.push(answer(["Grüße ", "👋🏽", " 你好"], "msg_unicode"))
    done = await cli.run("ask", "Grüß mich 👋")
    assert (done.returncode, done.stdout) == (0, "Grüße 👋🏽 你好\n")
    assert texts(request_body(server, 0)["input"]) == [("user", "Grüß mich 👋")]


async def test_redis_error_mid_turn_is_one_line(
    cli: Cli, server: SignallingServer, redis_client: aioredis.Redis
) -> None:
    """A Redis command failing after start-up (here WRONGTYPE) is one line and exit 1."""
    await redis_client.set(ConversationKey.terminal("broken").items, "not a list")
    done = await cli.run("ask", "Hi", "--channel", "broken")
    assert done.returncode == 1
    assert one_line(done).startswith("Redis failed:")
    assert server.requests == []


async def test_interrupt_keeps_the_partial_answer(
    cli: Cli, server: SignallingServer, store: HistoryStore
) -> None:
    """Ctrl-C mid-answer exits 130 and keeps the text so far as an incomplete answer."""
    release = asyncio.Event()
    server.push(SseStream([opening(["Half way"], "msg_int"), Wait(release), closing("msg_int")]))
    proc = await cli.start("ask", "Tell me", "--channel", "interrupted")
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(GUARD_SECONDS):
            assert await proc.stdout.readexactly(len("Half way")) == b"Half way"
        proc.send_signal(signal.SIGINT)
        done = await cli.finish(proc)
    finally:
        release.set()
    assert done.returncode == 130
    assert len(done.error_lines) <= 1
    history = await store.load(ConversationKey.terminal("interrupted"))
    assert [(i.role, i.text, i.status) for i in history] == [
        ("user", "Tell me", "completed"),
        ("assistant", "Half way", "incomplete"),
    ]


@pytest.mark.parametrize("channel", ["two words", "{tag}", "x" * 101])
async def test_bad_channel_name_is_one_line(
    cli: Cli, server: SignallingServer, channel: str
) -> None:
    """A channel name that cannot be a conversation key is refused with one line."""
    done = await cli.run("ask", "Hi", "--channel", channel)
    assert done.returncode == 1
    assert one_line(done).startswith("A channel name must")
    assert server.requests == []


def write_image(cli: Cli, name: str, data: bytes) -> str:
    """Put an image file in the CLI's working directory; its name is the path to pass."""
    (cli.cwd / name).write_bytes(data)
    return name


async def test_ask_with_an_image_sends_it_and_a_follow_up_sees_it(
    cli: Cli, server: SignallingServer, store: HistoryStore
) -> None:
    """`--image` sends the file as a data URL beside the question and history keeps a
    reference; the next `ask` sends the same bytes again, extending the first request."""
    cat = write_image(cli, "cat.png", image_bytes.png(shade=3))
    server.push(answer(["A cat."], "msg_cat"), answer(["Grey."], "msg_grey"))
    done = await cli.run("ask", "what is this?", "--image", cat, "--channel", "pets")
    assert (done.returncode, done.stdout, done.stderr) == (0, "A cat.\n", "")
    url = "data:image/png;base64," + base64.b64encode(image_bytes.png(shade=3)).decode()
    assert request_body(server, 0)["input"][0]["content"] == [
        {"type": "input_text", "text": "what is this?"},
        {"type": "input_image", "image_url": url, "detail": "auto"},
    ]
    [question, _] = await store.load(ConversationKey.terminal("pets"))
    assert [(ref.filename, ref.content_type) for ref in question.images] == [
        ("cat.png", "image/png")
    ]
    assert (await cli.run("ask", "what colour?", "--channel", "pets")).returncode == 0
    assert extends(server.requests[0].raw, server.requests[1].raw)
    assert request_body(server, 1)["input"][0]["content"][1]["image_url"] == url


async def test_an_image_alone_is_a_question_about_it(cli: Cli, server: SignallingServer) -> None:
    """`ask --image x.gif` with no text sends just the image and answers."""
    still = write_image(cli, "still.gif", image_bytes.gif())
    server.push(answer(["A dot."], "msg_dot"))
    done = await cli.run("ask", "--image", still)
    assert (done.returncode, done.stdout) == (0, "A dot.\n")
    [content] = [item["content"] for item in request_body(server, 0)["input"]]
    assert [part["type"] for part in content] == ["input_image"]
    assert content[0]["image_url"].startswith("data:image/gif;base64,")


@pytest.mark.parametrize(
    ("files", "env", "line"),
    [
        ({"dance.gif": image_bytes.gif(frames=2)}, {}, "The image dance.gif is animated;"),
        ({"spin.png": image_bytes.png(animated=True)}, {}, "The image spin.png is animated;"),
        ({"n.png": b"not a picture"}, {}, "The file n.png is not an image the bot can read;"),
        (
            {"big.png": image_bytes.png() + b"\x00" * 2048},
            {"MAX_IMAGE_BYTES": "1024"},
            "The image big.png is 2 KB; the limit is 1 KB.",
        ),
        ({"gone.png": None}, {}, "The image gone.png could not be read: No such file"),
        (
            {f"p{n}.png": image_bytes.png(shade=n) for n in range(5)},
            {},
            "That message has 5 images; the limit is 4 per message.",
        ),
    ],
)
async def test_a_refused_image_is_one_line_with_no_request_and_no_history(
    *,
    cli: Cli,
    server: SignallingServer,
    store: HistoryStore,
    files: dict[str, bytes | None],
    env: dict[str, str],
    line: str,
) -> None:
    """Animated, unknown, oversized, missing and too many images: one line, exit 1, nothing sent
    or stored."""
    args = ["ask", "look", "--channel", "refused"]
    for name, data in files.items():
        if data is not None:
            write_image(cli, name, data)
        args += ["--image", name]
    done = await cli.run(*args, **env)
    assert done.returncode == 1
    assert one_line(done).startswith(line)
    assert server.requests == []
    assert await store.load(ConversationKey.terminal("refused")) == []


async def test_a_text_only_model_is_refused_naming_one_that_reads_images(
    cli: Cli, server: SignallingServer, store: HistoryStore
) -> None:
    """A model whose input modalities lack images gets one line naming an image model and
    how to pick it; no model request is made and nothing is stored."""
    server.models = ["openai/o3-mini", "openai/gpt-4o", "z/vision"]
    server.modalities = {
        "openai/o3-mini": ["text"],
        "openai/gpt-4o": ["text", "image"],
        "z/vision": ["image", "text"],
    }
    cat = write_image(cli, "cat.png", image_bytes.png())
    done = await cli.run("ask", "what?", "--image", cat, "--model", "openai/o3-mini")
    assert done.returncode == 1
    assert one_line(done) == (
        "The model openai/o3-mini does not read images; openai/gpt-4o does (pick it with --model)."
    )
    assert server.requests == []
    assert await store.load(ConversationKey.terminal("terminal")) == []


async def test_a_text_only_model_gets_earlier_images_as_placeholders(
    cli: Cli, server: SignallingServer
) -> None:
    """After an image, a question to a text-only model sends `[image: name]` instead of it."""
    server.models = ["openai/o3-mini"]
    server.modalities = {"openai/o3-mini": ["text"]}
    cat = write_image(cli, "cat.png", image_bytes.png())
    server.push(answer(["A cat."], "msg_1"), answer(["Yes."], "msg_2"))
    assert (await cli.run("ask", "look", "--image", cat)).returncode == 0
    done = await cli.run("ask", "sure?", "--model", "openai/o3-mini")
    assert done.returncode == 0
    assert request_body(server, 1)["input"][0]["content"] == [
        {"type": "input_text", "text": "look"},
        {"type": "input_text", "text": "[image: cat.png]"},
    ]


async def test_reasoning_web_and_fallback_flags_reach_the_request(
    cli: Cli, server: SignallingServer
) -> None:
    """--reasoning, --web and --fallback (repeatable) add their fields; without them the
    settings decide, and by default none is sent."""
    server.push(answer(["a"], "msg_1"), answer(["b"], "msg_2"), answer(["c"], "msg_3"))
    flags = ["--reasoning", "High", "--web", "--fallback", "b/one", "--fallback", "b/two"]
    assert (await cli.run("ask", "Hi", "--model", "p/main", *flags)).returncode == 0
    body = request_body(server, 0)
    assert body["reasoning"] == {"effort": "high", "summary": "auto"}
    assert body["plugins"] == [{"id": "web", "max_results": 5}]
    assert body["models"] == ["p/main", "b/one", "b/two"]
    settings_env = {"REASONING_EFFORT": "low", "WEB_SEARCH": "true", "WEB_MAX_RESULTS": "2"}
    assert (await cli.run("ask", "Hi", "--channel", "s", **settings_env)).returncode == 0
    body = request_body(server, 1)
    assert body["reasoning"]["effort"] == "low"
    assert body["plugins"] == [{"id": "web", "max_results": 2}]
    await cli.run("ask", "Hi", "--channel", "plain")
    assert not {"reasoning", "plugins", "models"} & set(request_body(server, 2))


async def test_bad_reasoning_flag_is_one_line(cli: Cli, server: SignallingServer) -> None:
    """An unknown effort or a malformed fallback is refused in one sentence, with no request."""
    bad_effort = await cli.run("ask", "Hi", "--reasoning", "max")
    assert bad_effort.returncode == 1
    assert one_line(bad_effort).startswith("The reasoning effort must be one of")
    bad_model = await cli.run("ask", "Hi", "--fallback", "not a model")
    assert one_line(bad_model) == "'not a model' is not a model id like openai/gpt-4o-mini."
    assert server.requests == []


async def test_thinking_and_sources_go_to_stderr_answer_to_stdout(
    cli: Cli, server: SignallingServer, store: HistoryStore
) -> None:
    """The thinking status, summary sentences, sources and the model that answered go to
    stderr; stdout is exactly the answer; the raw reasoning is printed nowhere or stored."""
    server.push(
        answer(
            ["Monads ", "compose."],
            "msg_monad",
            reasoning=["**Recalling monads**", "\n\nThey wrap values. Next I"],
            raw_reasoning=["RAW THOUGHT"],
            citations=[("https://a.example/m", "About [monads]"), ("https://b.example/", "")],
            answered_by="b/fallback",
        )
    )
    done = await cli.run("ask", "Monads?", "--web", "--reasoning", "low", "--channel", "m")
    assert (done.returncode, done.stdout) == (0, "Monads compose.\n")
    lines = done.error_lines
    assert lines[0] == "💭 Thinking…"
    assert lines[1:3] == ["💭 Recalling monads", "💭 They wrap values."]
    assert lines[3].startswith("💭 Thought for ")
    assert lines[4:] == [
        "Sources:",
        "1. About [monads] <https://a.example/m>",
        "2. <https://b.example/>",
        "Answered by b/fallback",
    ]
    assert "RAW" not in done.stdout + done.stderr
    history = await store.load(ConversationKey.terminal("m"))
    assert [item.text for item in history] == ["Monads?", "Monads compose."]


async def test_budget_spent_reasoning_says_what_to_change(
    cli: Cli, server: SignallingServer
) -> None:
    """Cut off at the output limit while reasoning, with no answer: one line naming the fix."""
    server.push(answer([], "msg_none", reasoning=["Thinking."], end="incomplete"))
    done = await cli.run("ask", "Hard one", "--reasoning", "high")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.error_lines[-1] == (
        "The model spent its whole output budget on reasoning and wrote no answer: "
        "raise MAX_OUTPUT_TOKENS or lower --reasoning."
    )
