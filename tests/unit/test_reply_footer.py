"""The lines of a reply beside the answer text: the thinking status, sources and footers."""

from __future__ import annotations

import pytest

from bot.core.errors import LLMStreamError
from bot.core.events import Citation, Completed, Failed, Incomplete, ReasoningDelta, Usage
from bot.core.renderer import (
    MAX_SUMMARY_CHARS,
    REASONING_BUDGET_NOTICE,
    FooterOptions,
    ReplyLayout,
    SentMessage,
    answered_by_line,
    sources_lines,
    summary_line,
    usage_line,
)


def visible(line: str) -> str:
    """A line as Discord shows it: backslash escapes removed."""
    return line.replace("\\", "")


@pytest.mark.parametrize(
    ("summary", "line"),
    [
        ("", ""),
        ("**Planning the answer**", "Planning the answer"),
        ("**Plan**\n\nFirst I look. Then I wri", "First I look."),
        ("First I look. Then I write!", "Then I write!"),
        ("Ask @everyone and <@123>.", "Ask @\u200beveryone and <@\u200b123>."),
        ("Use `x` and [a](b) ~~no~~.", "Use x and (a)(b) no."),
    ],
)
def test_summary_line_is_the_newest_finished_sentence_made_plain(summary: str, line: str) -> None:
    """The status shows the newest finished sentence (a lone unfinished one when there is no
    other), formatting and links dropped, mentions neutralised."""
    assert visible(summary_line(summary)) == line


def test_summary_line_is_short_and_one_line() -> None:
    """However long the summary sentence, the line is one line of at most 120 characters."""
    line = summary_line("word " * 100 + "end.\n")
    assert "\n" not in line
    assert len(visible(line)) <= MAX_SUMMARY_CHARS
    assert line.endswith("…")


def test_summary_markdown_is_escaped() -> None:
    """Markdown left in a summary cannot format the status line."""
    assert summary_line("snake_case_name and a|b.") == "snake\\_case\\_name and a\\|b."


def test_sources_are_numbered_escaped_and_capped() -> None:
    """Sources are numbered titled links without previews; a title cannot break the link,
    format text or mention anyone; the host stands in for a missing title; at most `limit`."""
    citations = {
        "https://a.example/1": "A [tricky] *title* @everyone",
        "https://b.example/2": "",
        "https://c.example/3": "https://c.example/3",
        "https://d.example/4": "D",
    }
    assert sources_lines(citations, limit=3) == [
        "-# 1. [A (tricky) \\*title\\* @\u200beveryone](<https://a.example/1>)",
        "-# 2. [b.example](<https://b.example/2>)",
        "-# 3. [c.example](<https://c.example/3>)",
    ]


def test_long_titles_are_trimmed() -> None:
    """A title is cut to 80 characters."""
    [line] = sources_lines({"https://a.example/": "T" * 300})
    assert "T" * 79 + "…" in line
    assert "T" * 80 not in line


@pytest.mark.parametrize(
    ("requested", "answered", "named"),
    [
        ("openai/gpt-4o-mini", "openai/gpt-4o-mini", False),
        ("openai/gpt-4o-mini", "openai/gpt-4o-mini-2024-07-18", False),
        ("anthropic/claude-3.5-sonnet", "anthropic/claude-3.5-sonnet-20241022", False),
        ("meta/llama:free", "meta/llama", False),
        ("openai/gpt-4o:online", "OpenAI/GPT-4o", False),
        ("openai/gpt-4o-mini", "anthropic/claude-3.5-haiku", True),
        ("openai/gpt-4o", "openai/gpt-4o-mini", True),
        ("", "anthropic/claude-3.5-haiku", False),
    ],
)
def test_answered_by_names_only_another_model(requested: str, answered: str, named: bool) -> None:
    """Another model is named; the same one with a date, version or `:variant` suffix is not."""
    line = answered_by_line(requested, Completed(model=answered))
    assert line == ([f"-# Answered by {answered}"] if named else [])


def test_usage_line_shows_what_is_known() -> None:
    """Tokens in (cached), out (reasoning) and cost; the parts that are zero are left out."""
    full = Usage(1234, 456, reasoning_tokens=300, cost=0.0012, cached_tokens=1000)
    assert usage_line(full) == ["-# 1,234 in (1,000 cached) · 456 out (300 reasoning) · $0.0012"]
    assert usage_line(Usage(10, 2)) == ["-# 10 in · 2 out"]
    assert usage_line(Usage()) == []


def finished(layout: ReplyLayout) -> list[str]:
    """Every part's final content after applying every due operation."""
    shown: list[str] = []
    while (operation := layout.take()) is not None:
        if operation.message is None:
            shown.append(operation.content)
            layout.applied(operation, SentMessage(str(len(shown)), "channel:1"))
        else:
            shown[-1] = operation.content
            layout.applied(operation)
    return shown


def test_footer_lines_in_order_and_none_by_default() -> None:
    """Sources, thought-for, answered-by and usage lines follow the answer in that order."""
    layout = ReplyLayout(footer=FooterOptions(requested_model="a/asked", usage=True))
    layout.tick(100.0)
    layout.add_reasoning(ReasoningDelta("", summary=False))
    layout.tick(112.2)
    layout.add_text("Answer.")
    layout.add_citation(Citation("https://a.example/", "A"))
    layout.finish(Completed(model="b/fallback", usage=Usage(5, 7, reasoning_tokens=3)))
    assert finished(layout) == [
        "Answer.\n\n-# 1. [A](<https://a.example/>)\n-# 💭 Thought for 12 s"
        "\n-# Answered by b/fallback\n-# 5 in · 7 out (3 reasoning)"
    ]
    plain = ReplyLayout()
    plain.add_text("Answer.")
    plain.finish(Completed(model="b/fallback", usage=Usage(5, 7)))
    assert finished(plain) == ["Answer."]


def test_budget_spent_on_reasoning_says_what_to_change() -> None:
    """Cut off at the output limit with reasoning and no answer text: the notice says so and
    names the two remedies."""
    layout = ReplyLayout()
    layout.tick(1.0)
    layout.add_reasoning(ReasoningDelta("raw", summary=False))
    layout.tick(31.0)
    layout.finish(Incomplete("max_output_tokens", usage=Usage(10, 4096, reasoning_tokens=4096)))
    [content] = finished(layout)
    assert content == REASONING_BUDGET_NOTICE + "\n-# 💭 Thought for 30 s"
    assert "MAX_OUTPUT_TOKENS" in content
    assert "reasoning effort" in content


def test_budget_notice_also_from_reasoning_tokens_alone() -> None:
    """A model that reasoned without streaming any reasoning still gets the budget notice;
    an answer with text keeps the usual cut-off notice."""
    layout = ReplyLayout()
    layout.finish(Incomplete("max_output_tokens", usage=Usage(10, 64, reasoning_tokens=64)))
    assert finished(layout) == [REASONING_BUDGET_NOTICE]
    with_text = ReplyLayout()
    with_text.add_text("Part")
    with_text.finish(Incomplete("max_output_tokens", usage=Usage(10, 64, reasoning_tokens=60)))
    assert "cut off" in finished(with_text)[0]


def test_failure_while_thinking_replaces_the_status() -> None:
    """A failure before any answer text shows its notice where the status was."""
    layout = ReplyLayout()
    layout.tick(0.0)
    layout.add_reasoning(ReasoningDelta("Plan.", summary=True))
    layout.tick(0.5)
    assert "Thinking" in (layout.take() or pytest.fail("status not due")).content
    layout.finish(Failed(LLMStreamError("boom")))
    assert finished(layout)[0].startswith("-# ⚠️")
