"""Ops pieces without I/O: the new settings, Discord request labels, how answers are counted."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.config import ConfigError, load_settings
from bot.core.errors import LLMError
from bot.core.events import Completed, Failed, Incomplete, TextDelta, Usage
from bot.ops.metrics import BotMetrics, request_kind


def test_ops_settings_defaults_and_spellings() -> None:
    """HTTP on 127.0.0.1:8080, INFO text logs, no content by default; case does not matter."""
    settings = load_settings(env_file=None)
    assert (settings.http_host, settings.http_port) == ("127.0.0.1", 8080)
    assert (settings.log_level, settings.log_format, settings.log_content) == (
        "INFO",
        "text",
        False,
    )
    settings = load_settings(env_file=None, log_level="debug", log_format="JSON", http_port="0")
    assert (settings.log_level, settings.log_format, settings.http_port) == ("DEBUG", "json", 0)


@pytest.mark.parametrize(
    ("name", "value"), [("log_level", "chatty"), ("log_format", "xml"), ("http_port", "70000")]
)
def test_bad_ops_settings_name_the_variable(name: str, value: str) -> None:
    """A malformed ops setting stops start-up with one line naming it."""
    with pytest.raises(ConfigError, match=f"Setting {name.upper()} is invalid"):
        load_settings(env_file=None, **{name: value})


@pytest.mark.parametrize(
    ("method", "path", "kind"),
    [
        ("POST", "/api/v10/channels/123456789012/messages", "POST /channels/{id}/messages"),
        ("PATCH", "/api/v10/channels/1/messages/22", "PATCH /channels/{id}/messages/{id}"),
        (
            "PATCH",
            "/api/v10/webhooks/42/aW50ZXJhY3Rpb24.tok-en_x/messages/@original",
            "PATCH /webhooks/{id}/{token}/messages/@original",
        ),
        (
            "POST",
            "/api/v10/interactions/99/aW50.tok/callback",
            "POST /interactions/{id}/{token}/callback",
        ),
        (
            "PUT",
            "/api/v10/channels/1/messages/2/reactions/%E2%8F%B3/@me",
            "PUT /channels/{id}/messages/{id}/reactions/{emoji}/@me",
        ),
        ("GET", "/gateway", "GET /gateway"),
    ],
)
def test_request_kinds_hide_ids_and_tokens(method: str, path: str, kind: str) -> None:
    """A Discord request's label keeps the route and drops ids, tokens and emoji."""
    assert request_kind(method, path) == kind


def test_answers_are_counted_by_outcome_with_usage() -> None:
    """Each answer counts once under its front-end and outcome; tokens and cost add up."""
    ticks = iter(float(n) for n in range(100))
    metrics = BotMetrics(clock=lambda: next(ticks))
    watch = metrics.answer_started("mention")
    watch.event(TextDelta("hi"))
    watch.event(TextDelta("again"))
    watch.shown()
    watch.shown()
    usage = Usage(input_tokens=10, output_tokens=5, reasoning_tokens=2, cost=0.5, cached_tokens=4)
    watch.finished(Completed(usage=usage), crashed=False)
    metrics.answer_started("ask").finished(Incomplete(reason="stopped"), crashed=False)
    metrics.answer_started("ask").finished(Failed(LLMError("x")), crashed=True)
    page = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for s in family.samples
    }
    assert page["llmbot_answers_total", (("frontend", "mention"), ("outcome", "completed"))] == 1
    assert page["llmbot_answers_total", (("frontend", "ask"), ("outcome", "stopped"))] == 1
    assert page["llmbot_answers_total", (("frontend", "ask"), ("outcome", "crashed"))] == 1
    assert page["llmbot_first_token_seconds_count", ()] == 1
    assert page["llmbot_first_token_seconds_sum", ()] == 1.0
    assert page["llmbot_first_visible_text_seconds_count", ()] == 1
    assert page["llmbot_tokens_total", (("kind", "cached"),)] == 4
    assert page["llmbot_tokens_total", (("kind", "reasoning"),)] == 2
    assert page["llmbot_cost_usd_total", ()] == 0.5
