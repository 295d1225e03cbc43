"""Scenarios of things going wrong: model errors, a stream cut mid-answer, Redis restarting."""

from __future__ import annotations

import pytest

from tests.e2e.stack import BotStack, answer, had_button, has_button, input_texts
from tests.support.fake_responses import ABORT, PlainResponse, SseStream, error_response, sse_stream

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

RETRIED = 3  # the Responses client tries a retryable error three times before giving up


def cut_mid_stream(deltas: list[str]) -> SseStream:
    """A stream that sends `deltas` and then loses its connection (no final event)."""
    whole = sse_stream(deltas, end="none")
    return SseStream([whole.removesuffix(b"data: [DONE]\n\n"), ABORT])


FAILURES: dict[str, tuple[list[PlainResponse | SseStream], str]] = {
    "401": (
        [error_response(401, "No auth credentials found")],
        "API key was refused; the bot owner must fix it. (No auth credentials found)",
    ),
    "402": ([error_response(402, "Insufficient credits")], "out of credits"),
    "429": (
        [error_response(429, "slow down", headers={"Retry-After": "0"})] * RETRIED,
        "rate-limited right now; try again in a moment. (slow down)",
    ),
    "500": (
        [error_response(500, "boom")] * RETRIED,
        "provider had an error. Please try again. (boom)",
    ),
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
    assert input_texts(stack.requests()[-1]) == [f"{stack.label('alice')}: after the restart"]


async def test_redis_down_during_a_turn_gets_a_notice_then_recovers(stack: BotStack) -> None:
    """With Redis down the mention gets a one-line notice (no silence, no crash); once Redis is
    back the next mention is answered normally."""
    channel = stack.fresh_channel()
    stack.script(answer(["Back."]))
    stack.redis.stop()
    try:
        await mention(stack, channel.id, "are you there?")
        await stack.emu.wait_until(
            lambda: any(
                "conversation store" in m.content for m in stack.emu.bot_messages(channel.id)
            )
        )
    finally:
        stack.redis.start()
    await mention(stack, channel.id, "and now?")
    await stack.wait_for_final(channel.id, timeout=30)  # the notice got no Regenerate
    notice, back = stack.emu.bot_messages(channel.id)
    assert back.content == "Back."
    assert not had_button(notice, "regen")
    assert stack.bot.returncode is None
    [request] = stack.requests()
    assert input_texts(request) == [f"{stack.label('alice')}: and now?"]


async def test_redis_lost_mid_answer_says_it_was_not_saved(stack: BotStack) -> None:
    """Redis goes away while an answer streams: the answer ends with one line saying it could
    not be saved, and gets no Regenerate (there is nothing stored to redo)."""
    channel = stack.fresh_channel()
    stack.script(answer([f"word{n} " for n in range(12)], pace=0.2))
    await mention(stack, channel.id, "tell me")
    await stack.emu.wait_until(
        lambda: any("word2" in m.content for m in stack.emu.bot_messages(channel.id))
    )
    stack.redis.stop()
    try:
        await stack.emu.wait_until(
            lambda: (
                any("word11" in m.content for m in stack.emu.bot_messages(channel.id))
                and not has_button(stack.emu.bot_messages(channel.id)[-1], "stop")
            ),
            timeout=30,
        )
    finally:
        stack.redis.start()
    [reply] = stack.emu.bot_messages(channel.id)
    assert reply.content.endswith(
        "word11\n\n-# ⚠️ This answer could not be saved, so I won't remember it."
    )
    assert not had_button(reply, "regen")


def refused_in(stack: BotStack, channel_id: int, status: int) -> bool:
    """Whether the emulator refused one of the bot's requests in a channel with `status`."""
    return any(
        call.status == status and call.params.get("channel_id") == str(channel_id)
        for call in stack.emu.timeline
    )


async def test_channel_without_send_permission_is_logged_and_others_answered(
    stack: BotStack,
) -> None:
    """403 50013 in one channel: one clear log line naming it, and the bot answers elsewhere."""
    muted, other = stack.fresh_channel(), stack.fresh_channel()
    stack.emu.forbid_sending(muted.id)
    stack.script(answer(["Nobody sees this."]), answer(["Still answering."]))
    await mention(stack, muted.id, "hello?")
    await stack.emu.wait_until(lambda: refused_in(stack, muted.id, 403))
    await mention(stack, other.id, "and here?")
    [reply] = await stack.wait_for_final(other.id)
    assert reply.content == "Still answering."
    assert stack.bot.returncode is None
    lines = [line for line in stack.bot.stderr_text().splitlines() if f"({muted.id})" in line]
    assert len(lines) == 1, lines
    assert lines[0].startswith("WARNING ")
    assert "Send Messages" in lines[0]
    assert f"#{muted.name}" in lines[0]
    assert "Traceback" not in stack.bot.stderr_text()


async def test_channel_denying_the_bot_is_not_answered_and_costs_no_model_call(
    stack: BotStack,
) -> None:
    """An overwrite denying the bot Send Messages: it skips the mention without asking the
    model and says why in one log line, and keeps answering elsewhere."""
    denied, other = stack.fresh_channel(), stack.fresh_channel()
    await stack.emu.deny_bot_sending(denied.id)
    stack.script(answer(["Still here."]))
    await mention(stack, denied.id, "anyone?")
    await mention(stack, other.id, "and here?")
    [reply] = await stack.wait_for_final(other.id)
    assert reply.content == "Still here."
    [request] = stack.requests()
    assert input_texts(request) == [f"{stack.label('alice')}: and here?"]
    assert stack.emu.bot_messages(denied.id) == []
    assert not refused_in(stack, denied.id, 403)
    lines = [line for line in stack.bot.stderr_text().splitlines() if f"({denied.id})" in line]
    assert len(lines) == 1, lines
    assert lines[0].startswith("WARNING ")
    assert "may not send" in lines[0]


async def test_thread_locked_mid_answer_stops_it_cleanly(stack: BotStack) -> None:
    """A moderator locks the bot's thread while it answers: the answer stops, logged once."""
    channel, other = stack.fresh_channel(), stack.fresh_channel()
    stack.script(answer([f"part{n} " for n in range(200)], pace=0.1), answer(["Fine here."]))
    await stack.emu.inject_interaction(
        "chat", {"prompt": "Tell me everything"}, user="alice", channel_id=channel.id
    )

    def thread_streaming() -> bool:
        threads = [c for c in stack.emu.world.channels.values() if c.parent_id == channel.id]
        return bool(threads) and any(
            "part2" in m.content for m in stack.emu.bot_messages(threads[0].id)
        )

    await stack.emu.wait_until(thread_streaming)
    thread = next(c for c in stack.emu.world.channels.values() if c.parent_id == channel.id)
    await stack.emu.lock_thread(thread.id)
    await stack.emu.wait_until(lambda: refused_in(stack, thread.id, 400))
    await mention(stack, other.id, "still there?")
    await stack.wait_for_final(other.id)
    assert stack.llm.disconnects == 1
    assert stack.bot.returncode is None
    lines = [line for line in stack.bot.stderr_text().splitlines() if f"({thread.id})" in line]
    assert len(lines) == 1, lines
    assert "archived and locked" in lines[0]
    refusals = [c for c in stack.emu.timeline if c.status == 400]
    assert len(refusals) == 1
