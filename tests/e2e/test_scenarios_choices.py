"""Scenarios of the answer choices against the real bot under Discord's enforced rate limits:
reasoning (its live status, /reasoning), web search with sources (/web, /ask web:), fallback
models (/fallbacks, "Answered by") and the usage footer (/footer), and /settings showing them."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.e2e.conftest import assert_clean_log
from tests.e2e.discord_emulator.interactions import InteractionRecord
from tests.e2e.discord_emulator.model import Channel, Message
from tests.e2e.stack import BotStack, answer, has_button, running_stack
from tests.support.fake_responses import SseStream, Wait, answer_events, encode_events

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

FALLBACK = "anthropic/claude-3.5-sonnet"
DEFAULT_USAGE_LINE = "-# 12 in · 5 out (2 reasoning) · $0.00012"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotStack]:
    """One bot for this module, against an emulator that answers 429 past Discord's limits."""
    workdir = Path(tmp_path_factory.mktemp("choices"))
    async with running_stack(workdir, channels=8, enforce_rate_limits=True) as running:
        yield running
        assert running.emu.served_429 == 0
        assert_clean_log(running.bot.stderr_text())


async def command(
    stack: BotStack, name: str, options: dict[str, Any] | None, user: str, channel: Channel
) -> InteractionRecord:
    """A user runs a slash command; wait until the bot answered it."""
    record = await stack.emu.inject_interaction(name, options, user=user, channel_id=channel.id)
    await stack.emu.wait_until(lambda: record.callback_type is not None)
    return record


def reply_text(record: InteractionRecord) -> str:
    """The content of an interaction's immediate (type 4) answer."""
    assert record.callback_body is not None
    return str(record.callback_body["data"]["content"])


async def mention(stack: BotStack, channel: Channel, text: str, *, count: int = 1) -> list[Message]:
    """Alice mentions the bot; the answers' messages once the count-th answer is finished
    (slash-command answers left out)."""
    await stack.emu.inject_message(channel.id, "alice", f"{stack.emu.bot_user.mention} {text}")
    shown = await stack.wait_for_final(channel.id, count=count)
    return [message for message in shown if message.interaction_id is None]


def held_after_reasoning(
    deltas: list[str], summary: list[str], release: asyncio.Event
) -> SseStream:
    """A reasoning answer (raw reasoning, then summaries) that holds until `release` before the
    answer text starts."""
    events = answer_events(deltas, reasoning=summary, raw_reasoning=["secret chain of thought"])
    whole = encode_events(events)
    cut = whole.index(b'"response.output_text.delta"')
    cut = whole.rindex(b"\n\n", 0, cut) + 2
    return SseStream([whole[:cut], Wait(release), whole[cut:]])


async def test_a_reasoning_answer_shows_thinking_then_the_answer(stack: BotStack) -> None:
    """While the model reasons the reply is the thinking status, counting seconds, with its
    newest summary sentence (never the raw reasoning); then exactly the answer and how long
    the model thought."""
    channel = stack.fresh_channel()
    emu = stack.emu
    release = asyncio.Event()
    summary = ["**Recalling geography**\n\nThe capital of France is Paris."]
    stack.script(held_after_reasoning(["Paris", " is the capital."], summary, release))
    await emu.inject_message(channel.id, "alice", f"{emu.bot_user.mention} capital of France?")

    def counting_with_summary() -> bool:  # a second passed: the status counts it
        shown = emu.bot_messages(channel.id)
        content = shown[0].content if shown else ""
        return "Thinking… 0 s" not in content and "The capital of France is Paris." in content

    await emu.wait_until(counting_with_summary)
    release.set()
    [reply] = await stack.wait_for_final(channel.id)
    status = re.compile(r"-# 💭 Thinking… \d+ s(\n-# The capital of France is Paris\.)?")
    thinking = [c for c in reply.history if not c.startswith("Paris")]
    assert thinking
    assert reply.history[0] == thinking[0]
    assert [c for c in thinking if not status.fullmatch(c)] == []
    assert re.fullmatch(r"Paris is the capital\.\n\n-# 💭 Thought for [1-9]\d* s", reply.content)
    assert not any("secret" in content for content in reply.history)


async def test_reasoning_choice_reaches_the_request_and_a_bad_value_is_refused(
    stack: BotStack,
) -> None:
    """/reasoning: a bad effort is one ephemeral sentence and nothing is stored; a good one
    (Manage Server) shows with its source and puts `reasoning` in the next request."""
    channel = stack.fresh_channel()
    refused = await command(stack, "reasoning", {"effort": "extreme"}, "admin", channel)
    assert refused.ephemeral
    assert reply_text(refused).count(".") == 1
    assert "must be one of none, minimal, low, medium, high" in reply_text(refused)
    shown = await command(stack, "reasoning", None, "bob", channel)
    assert "`auto` (the model's own) (from the default setting)" in reply_text(shown)
    assert "Manage Server" in reply_text(
        await command(stack, "reasoning", {"effort": "high"}, "bob", channel)
    )
    done = await command(stack, "reasoning", {"effort": "HIGH"}, "admin", channel)
    assert reply_text(done) == "Set the reasoning effort for this channel to `high`."
    stack.script(answer(["Done."]))
    await mention(stack, channel, "think hard")
    [request] = stack.requests()
    assert request.body["reasoning"] == {"effort": "high", "summary": "auto"}
    shown = await command(stack, "reasoning", None, "bob", channel)
    assert "`high` (from the channel setting)" in reply_text(shown)


async def test_web_search_for_a_channel_ends_with_numbered_sources(stack: BotStack) -> None:
    """/web on for the channel: a mention's request has the web plugin; the answer stays
    exact and the sources (at most WEB_MAX_RESULTS, de-duplicated, links in <>) follow in a
    message of their own, every message within 2,000 characters."""
    channel = stack.fresh_channel()
    done = await command(stack, "web", {"search": "on"}, "admin", channel)
    assert reply_text(done) == "Set the web search for this channel to on."
    text = ("Lorem ipsum dolor sit amet. " * 68).strip()  # 1,903 characters
    urls = [f"https://example.com/{n}" for n in range(1, 7)]
    citations = [(urls[0], "Source 1"), *[(url, f"Source {n}") for n, url in enumerate(urls, 1)]]
    stack.script(answer([text[:1000], text[1000:]], citations=citations))
    replies = await mention(stack, channel, "what is new?")
    [request] = stack.requests()
    assert request.body["plugins"] == [{"id": "web", "max_results": 5}]
    sources = "\n".join(f"-# {n}. [Source {n}](<{urls[n - 1]}>)" for n in range(1, 6))
    assert [reply.content for reply in replies] == [text, sources]
    assert all(len(content) <= 2000 for reply in replies for content in reply.history)


async def test_ask_web_true_searches_for_that_answer_only(stack: BotStack) -> None:
    """/ask web:true puts the web plugin in that request only; the next mention has none."""
    channel = stack.fresh_channel()
    stack.script(answer(["Searched."]), answer(["Plain."]))
    record = await stack.emu.inject_interaction(
        "ask", {"prompt": "news?", "web": True}, user="bob", channel_id=channel.id
    )

    def asked() -> bool:
        message_id = record.original_message_id
        return message_id is not None and has_button(stack.emu.message(message_id), "regen")

    await stack.emu.wait_until(asked, timeout=20)
    await mention(stack, channel, "and without?", count=2)
    first, second = stack.requests()
    assert first.body["plugins"] == [{"id": "web", "max_results": 5}]
    assert "plugins" not in second.body


async def test_fallback_models_are_sent_and_another_model_is_named(stack: BotStack) -> None:
    """/fallbacks: an unknown model is refused and nothing stored; known ones go in the
    request's `models`, and an answer from a fallback ends with `Answered by`."""
    channel = stack.fresh_channel()
    refused = await command(stack, "fallbacks", {"models": "openai/gpt-9"}, "admin", channel)
    assert refused.ephemeral
    assert reply_text(refused).startswith("OpenRouter has no model `openai/gpt-9`.")
    models = f"{FALLBACK}, google/gemini-2.0-flash"
    done = await command(stack, "fallbacks", {"models": models}, "admin", channel)
    assert reply_text(done) == (
        f"Set the fallback models for this channel to `{FALLBACK}`, `google/gemini-2.0-flash`."
    )
    stack.script(answer(["Hi."], answered_by=FALLBACK))
    [reply] = await mention(stack, channel, "hello")
    [request] = stack.requests()
    assert request.body["models"] == ["openai/gpt-4o-mini", FALLBACK, "google/gemini-2.0-flash"]
    assert reply.content == f"Hi.\n\n-# Answered by {FALLBACK}"


async def test_usage_footer_for_the_server_and_settings_list_every_choice(
    stack: BotStack,
) -> None:
    """/footer on needs Manage Server and holds for the whole server: answers end with the
    usage line; /settings lists every choice with its source within one message."""
    channel = stack.fresh_channel()
    refused = await command(stack, "footer", {"show": "on"}, "bob", channel)
    assert "Manage Server" in reply_text(refused)
    await command(stack, "footer", {"show": "on"}, "admin", channel)
    try:
        stack.script(answer(["Counted."]))
        [reply] = await mention(stack, channel, "count")
        settings = reply_text(await command(stack, "settings", None, "bob", channel))
    finally:  # the server's choice reaches every channel: put it back for the other scenarios
        await command(stack, "footer", {"show": "default"}, "admin", channel)
    assert reply.content == f"Counted.\n\n{DEFAULT_USAGE_LINE}"
    assert "**Usage footer**: on (server)" in settings
    assert "**Reasoning effort**: `auto` (the model's own) (default)" in settings
    assert "**Web search**: off (default)" in settings
    assert "**Fallback models**: none (default)" in settings
    assert len(settings) <= 2000


async def test_chat_web_true_keeps_web_search_in_its_thread(stack: BotStack) -> None:
    """/chat web:true: the first answer and the thread's follow-ups search the web, and the
    thread's /web shows it as its channel choice."""
    channel = stack.fresh_channel()
    emu = stack.emu
    stack.script(answer(["Found."]), answer(["More."]))
    await emu.inject_interaction(
        "chat", {"prompt": "Latest news", "web": True}, user="alice", channel_id=channel.id
    )
    await emu.wait_until(
        lambda: any(c.parent_id == channel.id for c in emu.world.channels.values())
    )
    thread = next(c for c in emu.world.channels.values() if c.parent_id == channel.id)
    await stack.wait_for_final(thread.id)
    await emu.inject_message(thread.id, "alice", "And more?")
    await stack.wait_for_final(thread.id, count=2)
    assert [r.body.get("plugins") for r in stack.requests()] == [
        [{"id": "web", "max_results": 5}]
    ] * 2
    shown = await command(stack, "web", None, "bob", thread)
    assert reply_text(shown) == "The web search here is on (from the channel setting)."


async def test_reasoning_and_fallbacks_autocomplete(stack: BotStack) -> None:
    """/reasoning suggests the efforts that start with what was typed; /fallbacks completes the
    model after the last comma, keeping the ones before it."""
    channel = stack.fresh_channel()
    emu = stack.emu
    efforts = await emu.inject_autocomplete(
        "reasoning", "effort", "m", user="admin", channel_id=channel.id
    )
    models = await emu.inject_autocomplete(
        "fallbacks", "models", f"{FALLBACK}, gem", user="admin", channel_id=channel.id
    )
    await emu.wait_until(
        lambda: efforts.callback_body is not None and models.callback_body is not None
    )
    assert efforts.callback_body is not None
    assert models.callback_body is not None
    assert [c["value"] for c in efforts.callback_body["data"]["choices"]] == ["minimal", "medium"]
    assert [c["value"] for c in models.callback_body["data"]["choices"]] == [
        f"{FALLBACK}, google/gemini-2.0-flash"
    ]
