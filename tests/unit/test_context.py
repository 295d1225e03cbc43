"""Fitting history to a model's context: estimates, whole exchanges, cuts in blocks."""

from __future__ import annotations

import itertools

from bot.core.context import (
    ITEM_TOKENS,
    exchanges,
    fit_history,
    halve,
    input_budget,
    is_context_error,
    item_tokens,
)
from bot.core.errors import BadRequestError, LLMStreamError, PayloadTooLargeError, ServerError
from bot.core.events import HistoryItem


def turn(n: int, size: int = 400) -> list[HistoryItem]:
    """One exchange: a question and its answer, each `size` characters."""
    return [
        HistoryItem(role="user", text=f"q{n}".ljust(size, "."), speaker="Ann"),
        HistoryItem(role="assistant", text=f"a{n}".ljust(size, "."), item_id=f"msg_{n}"),
    ]


def conversation(turns: int) -> list[HistoryItem]:
    """`turns` exchanges, oldest first."""
    return [item for n in range(turns) for item in turn(n)]


def test_an_item_is_estimated_at_four_characters_a_token_plus_framing() -> None:
    """400 characters of text and a 3-letter name make 100 + 1 tokens plus the framing."""
    item = turn(0)[0]
    assert item_tokens(item) == ITEM_TOKENS + 100 + 1


def test_the_budget_leaves_room_for_the_answer_and_the_instructions() -> None:
    """Unknown context: no limit; otherwise context less output and instructions, with margin."""
    assert input_budget(None, 1000, "x") == 0
    assert input_budget(0, 1000, "x") == 0
    assert input_budget(10_000, 1000, "x" * 400) == int((10_000 - 1000 - 100 - ITEM_TOKENS) * 0.9)
    assert input_budget(1000, 4096, "") == 1


def test_exchanges_start_at_a_question_after_an_answer() -> None:
    """A reply context and its question share an exchange; an unanswered one joins the next."""
    ctx = HistoryItem(role="user", text="quoted")
    items = [ctx, *turn(0), turn(1)[0], *turn(2)]
    assert exchanges(items) == [[ctx, *turn(0)], [turn(1)[0], *turn(2)]]


def test_history_that_fits_is_sent_whole() -> None:
    """Under the budget nothing goes; a budget of 0 (unknown) never cuts."""
    items = conversation(5)
    assert fit_history(items, 10_000) == items
    assert fit_history(conversation(500), 0) == conversation(500)


def test_past_the_budget_whole_old_exchanges_go_until_half_is_left() -> None:
    """The cut falls between exchanges and leaves at most half the budget."""
    items = conversation(10)  # exchanges of 109 + 108 tokens
    # The 5th exchange passes 1,000: down to exchanges 3-4 (434 tokens); the 8th passes it
    # again: down to 6-7; the 9th and 10th are added to those.
    assert fit_history(items, 1000) == items[-8:]


def test_the_cut_stays_put_while_later_turns_extend_the_request() -> None:
    """Adding exchanges keeps the same first item until the budget is passed again."""
    heads = []
    for turns in range(1, 30):
        fitted = fit_history(conversation(turns), 1000)
        heads.append(fitted[0].text[:3])
        assert fitted == conversation(turns)[-len(fitted) :]
    changes = sum(1 for a, b in itertools.pairwise(heads) if a != b)
    assert changes <= 29 // 2  # a cut every few turns, not one per turn
    runs = [heads.count(head) for head in dict.fromkeys(heads)]
    assert max(runs) >= 3


def test_the_newest_exchange_stays_even_alone_over_the_budget() -> None:
    """A question bigger than the budget is still sent (the API then says it is too long)."""
    items = [*conversation(3), HistoryItem(role="user", text="x" * 40_000)]
    assert fit_history(items, 100) == items[-1:]


def test_halving_keeps_the_newest_half() -> None:
    """Half the estimated size, whole exchanges, the newest kept; one exchange cannot shrink."""
    items = conversation(8)  # 1,736 tokens: the newest 4 exchanges make 868
    assert halve(items) == items[-8:]
    assert halve(turn(0)) == turn(0)


def test_context_errors_are_recognised_by_code_or_by_what_a_400_says() -> None:
    """The API's code, or a 400/413 naming the context length; other errors are not."""
    assert is_context_error(BadRequestError(400, "context_length_exceeded", "too long"))
    assert is_context_error(LLMStreamError("x", code="context_length_exceeded"))
    said = "This endpoint's maximum context length is 8192 tokens."
    assert is_context_error(BadRequestError(400, 400, said))
    assert is_context_error(PayloadTooLargeError(413, 413, "Context window exceeded"))
    assert not is_context_error(BadRequestError(400, 400, "invalid model"))
    assert not is_context_error(ServerError(500, 500, said))
