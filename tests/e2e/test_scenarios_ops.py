"""Operations against the real bot process: /healthz and /metrics while it answers, JSON logs
(one object per line, with the turn's context), and no secret or message content in the log."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.stack import BotStack, answer, running_stack
from tests.support.redis_server import free_port

pytestmark = pytest.mark.e2e

API_KEY = "sk-or-v1-e2e-ops-secret-7f3a9c"
QUESTION = "tell me about the zebra-lantern-question"


async def get(url: str) -> tuple[int, str]:
    """GET a URL; its status and body."""
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, await resp.text()


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus text page, keyed by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(
    page: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    """One sample's value (0 when absent)."""
    return page.get((name, frozenset(labels.items())), 0.0)


async def answer_once(stack: BotStack) -> None:
    """A mention and an /ask, each answered to the end."""
    emu = stack.emu
    channel = stack.fresh_channel()
    stack.script(answer(["Zebras ", "are ", "striped."]), answer(["Yes."]))
    await emu.inject_message(channel.id, "alice", f"{emu.bot_user.mention} {QUESTION}")
    await stack.wait_for_final(channel.id)
    await emu.inject_interaction(
        "ask", {"prompt": "and lanterns?"}, user="bob", channel_id=channel.id
    )
    await stack.wait_for_final(channel.id, count=2)


async def test_health_metrics_and_json_logs(tmp_path: Path) -> None:
    """While the bot runs, /healthz is 200 and /metrics counts the answers by front-end and
    outcome, their timings, tokens and cost, and Discord's requests; with Redis gone /healthz is
    503 with the reason. Every log line is a JSON object, the answer's line carries guild,
    channel, turn and model, and neither the token, the key nor the question is in the log."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with running_stack(
        tmp_path,
        channels=2,
        http_port=str(port),
        log_format="json",
        log_level="DEBUG",
        openrouter_api_key=API_KEY,
    ) as stack:
        await answer_once(stack)
        assert await get(f"{base}/healthz") == (200, "ok\n")
        status, text = await get(f"{base}/metrics")
        assert status == 200
        page = samples(text)
        assert value(page, "llmbot_answers_total", frontend="mention", outcome="completed") == 1
        assert value(page, "llmbot_answers_total", frontend="ask", outcome="completed") == 1
        assert value(page, "llmbot_first_token_seconds_count") == 2
        assert value(page, "llmbot_first_visible_text_seconds_count") == 2
        assert value(page, "llmbot_stream_seconds_count") == 2
        assert value(page, "llmbot_tokens_total", kind="input") > 0
        assert value(page, "llmbot_tokens_total", kind="output") > 0
        assert value(page, "llmbot_cost_usd_total") > 0
        sends = value(
            page,
            "llmbot_discord_requests_total",
            kind="POST /channels/{id}/messages",
            status="200",
        )
        assert sends >= 1
        callback = "POST /interactions/{id}/{token}/callback"
        callbacks = [
            count
            for (name, labels), count in page.items()
            if name == "llmbot_discord_requests_total" and ("kind", callback) in labels
        ]
        assert callbacks == [1]
        assert value(page, "llmbot_pacer_wait_seconds_count") >= 2
        assert value(page, "llmbot_active_answers") == 0
        assert value(page, "llmbot_queued_messages") == 0
        assert "# TYPE llmbot_tool_calls_total counter" in text
        assert "# TYPE llmbot_discord_429_total counter" in text

        stack.redis.stop()
        status, text = await get(f"{base}/healthz")
        assert status == 503
        assert text.startswith("Redis failed: ")
        _, text = await get(f"{base}/metrics")
        errors = [s for s in samples(text) if s[0] == "llmbot_redis_errors_total"]
        assert errors, "a failed PING is counted as a Redis error"
        await stack.bot.stop()
        stderr = stack.bot.stderr_text()
        stdout = stack.bot.stdout_path.read_text(encoding="utf-8")

    records = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    assert records, "the bot logged nothing"
    for record in records:
        assert {"time", "level", "logger", "message"} <= record.keys(), record
    answered = [r for r in records if r["message"].startswith("Answered in")]
    assert len(answered) == 2
    for record in answered:
        assert {"guild", "channel", "turn", "model"} <= record.keys(), record
        assert record["model"] == "openai/gpt-4o-mini"
    assert answered[0]["turn"] != answered[1]["turn"]
    whole_log = stderr + stdout
    assert API_KEY not in whole_log
    assert stack.emu.token not in whole_log
    assert "zebra-lantern" not in whole_log
