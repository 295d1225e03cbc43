"""Scenarios of things going wrong: model errors, a stream cut mid-answer, Redis restarting."""

from __future__ import annotations

import pytest

from tests.e2e.stack import BotStack, answer, input_texts
from tests.support.fake_responses import ABORT, PlainResponse, SseStream, error_response, sse_stream

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

RETRIED = 3  # the Responses client tries a retryable error three times before giving up


def cut_mid_stream(deltas: list[str]) -> SseStream:
    """A stream that sends `deltas` and then loses its connection (no final event)."""
    whole = sse_stream(deltas, end="none")
    return SseStream([whole.removesuffix(b"data: [DONE]\n\n"), ABORT])


FAILURES: dict[str, tuple[list[PlainResponse | SseStream], str]] = {
    "401": ([error_response(401, "No auth credentials found")], "API key was refused"),
    "402": ([error_response(402, "Insufficient credits")], "out of credits"),
    "429": (
        [error_response(429, "slow down", headers={"Retry-After": "0"})] * RETRIED,
        "rate limited",
    ),
    "500": ([error_response(500, "boom")] * RETRIED, "provider had an error"),
    "mid-stream": ([cut_mid_stream(["The start", " of an answer"])], "broke off"),
}


async def mention(stack: BotStack, channel_id: int, text: str) -> None:
    """Alice mentions the bot in a channel."""
    await stack.emu.inject_message(channel_id, "alice", f"{stack.emu.bot_user.mention} {text}")


@pytest.mark.parametrize("failure", list(FAILURES))
async def test_model_failure_is_told_and_the_next_message_answered(
    stack: BotStack, failure: str
) -> None:
    """An HTTP error or a cut stream: one clear line in Discord, and the bot carries on."""
    scripts, expected = FAILURES[failure]
    channel = stack.fresh_channel()
    stack.script(*scripts, answer(["Back", " to normal."]))
    await mention(stack, channel.id, "first")
    [failed] = await stack.wait_for_final(channel.id)
    assert expected in failed.content
    assert "⚠️" in failed.content
    if failure == "mid-stream":
        assert failed.content.startswith("The start of an answer")
    await mention(stack, channel.id, "second")
    await stack.wait_for_final(channel.id, count=2)
    assert stack.emu.bot_messages(channel.id)[-1].content == "Back to normal."
    assert len(stack.requests()) == len(scripts) + 1


async def test_redis_restart_between_turns_is_survived(stack: BotStack) -> None:
    """Redis restarts (losing its data) between two turns: the bot answers the second one."""
    channel = stack.fresh_channel()
    stack.script(answer(["Before."]), answer(["After."]))
    await mention(stack, channel.id, "before the restart")
    await stack.wait_for_final(channel.id)
    stack.redis.restart()
    await mention(stack, channel.id, "after the restart")
    await stack.wait_for_final(channel.id, count=2, timeout=30)
    assert stack.emu.bot_messages(channel.id)[-1].content == "After."
    assert input_texts(stack.requests()[-1]) == ["[Alice]: after the restart"]
