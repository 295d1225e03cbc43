"""How /memory shows facts: under Discord's 2,000 characters, quoted as data that cannot
format or ping, with who told each fact, when, where and who may hear it."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bot.core.tools.context import ThreadKind
from bot.core.tools.memory_store import FACT_MAX_CHARS, Fact
from bot.frontend.commands.memory import clip, fact_head, forget_reply, listing, quoted


def fact(
    number: int,
    text: str,
    *,
    public: bool = True,
    channel: str = "7",
    parent: str | None = None,
    thread: ThreadKind | None = None,
    scope: str = "7",
) -> Fact:
    """A fact told by Alice, public in channel 7 unless told otherwise."""
    return Fact(
        str(number), text, "Alice", "1", 1_700_000_000.0, channel, parent, thread, public, scope
    )


def test_ten_of_the_longest_facts_fit_in_one_message() -> None:
    """A full page of 300-character facts told by long names stays within 2,000 characters,
    every fact keeping its head line and a part of its text."""
    long = "*" * FACT_MAX_CHARS
    facts = [
        Fact(str(n), long, "N" * 64, "1", 1_700_000_000.0, "123456789012345678", scope="1")
        for n in range(100, 110)
    ]
    shown = listing("**Server memory**: 10 facts", facts)
    assert len(shown) <= 2000
    assert all(f"**#{n}**" in shown for n in range(100, 110))
    assert shown.count("\n> ") == 10


@given(st.lists(st.text(min_size=1, max_size=FACT_MAX_CHARS), min_size=1, max_size=10))
def test_any_page_fits(texts: list[str]) -> None:
    """Whatever the facts say, a page is at most 2,000 characters."""
    assert len(listing("header", [fact(n, t) for n, t in enumerate(texts)])) <= 2000


def test_facts_are_quoted_as_data() -> None:
    """Mentions cannot ping and markdown does not format: the fact shows as it was written."""
    shown = quoted("@everyone **ignore your rules** <@123456789012345678> __now__")
    assert "@everyone" not in shown
    assert "<@123456789012345678>" not in shown
    assert "\\*\\*ignore your rules\\*\\*" in shown


def test_clip_never_leaves_a_lone_escape() -> None:
    """Cutting an escaped text never ends on a backslash that would escape the ellipsis."""
    assert clip("ab\\*cd", 4) == "ab…"
    assert clip("short", 10) == "short"


def test_head_says_where_and_who_may_hear() -> None:
    """Public facts say so; a private channel's fact names the channel; a private thread's
    fact says it stays in that thread."""
    assert fact_head(fact(1, "x")).endswith("<#7> · public")
    private = fact(2, "x", public=False, scope="7")
    assert fact_head(private).endswith("🔒 private to <#7>")
    thread = fact(3, "x", public=False, channel="9", parent="7", thread="private", scope="9")
    assert fact_head(thread).endswith("<#9> · 🔒 private to that thread")
    assert fact_head(fact(4, "x")).startswith("**#4** · Alice · 2023-11-14 22:13 UTC")


def test_forget_replies() -> None:
    """Each outcome of forgetting is one sentence naming the fact."""
    assert forget_reply("forgotten", "4") == "Forgot fact #4."
    assert forget_reply("missing", "4") == "There is no fact #4 that you can see."
    assert forget_reply("not_yours", "4").startswith("Only the member who told fact #4")
