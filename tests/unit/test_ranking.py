"""Words and BM25 ranking of the server memory's index (pure)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bot.core.tools.ranking import Index, words


def test_words_fold_case_plurals_and_skip_common_words() -> None:
    """Words are lower-cased, a plural `s` folds, very common words are dropped."""
    assert words("The CATS of Zürich, and the glass!") == ["cat", "zürich", "glass"]


def test_rank_prefers_rare_words_and_newer_on_ties() -> None:
    """A rarer shared word counts more; equal scores put the newer document first."""
    index = Index()
    for number, text in enumerate(["tea time", "tea party", "tea party", "garden party"]):
        index.add(number, text)
    assert index.rank("tea garden", lambda _n: True, 10)[0] == 3
    assert index.rank("party", lambda _n: True, 2) == [3, 2]
    assert index.rank("party", lambda n: n != 2, 10) == [3, 1]


@given(st.lists(st.text(max_size=40), max_size=20), st.sets(st.integers(0, 19)))
def test_removing_documents_is_the_same_as_never_adding_them(
    texts: list[str], removed: set[int]
) -> None:
    """An index with documents removed ranks like one that never had them."""
    full, fresh = Index(), Index()
    for number, text in enumerate(texts):
        full.add(number, text)
        if number not in removed:
            fresh.add(number, text)
    for number in removed:
        full.remove(number)
    assert (full.lengths, full.postings) == (fresh.lengths, fresh.postings)
    for query in texts:
        assert full.rank(query, lambda _n: True, 8) == fresh.rank(query, lambda _n: True, 8)
