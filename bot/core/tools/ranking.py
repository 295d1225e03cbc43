"""Relevance of short texts to a query: words, and BM25 over a small in-memory index.

Pure and I/O-free. Words are lower-cased runs of letters and digits, with very common English
words dropped and a plural `s` folded, so "cats" finds "cat".
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable

K1 = 1.2
B = 0.75
_WORD = re.compile(r"\w+")
_STOPWORD_TEXT = """a an and are as at be been but by can did do does for from had has have he
her his how i if in into is it its me my no not of on or our she so than that the their them
then there these they this to was we were what when where which who whom why will with you your"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())


def words(text: str) -> list[str]:
    """The searchable words of a text, in order."""
    found = []
    for raw in _WORD.findall(text.casefold()):
        word = raw.replace("_", "")
        if not word or word in STOPWORDS:
            continue
        if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        found.append(word)
    return found


class Index:
    """Postings (word -> {document: count}) and lengths of documents numbered by the caller;
    documents come and go one at a time, so a changed memory is never indexed anew."""

    def __init__(self) -> None:
        self.lengths: dict[int, int] = {}
        self.postings: dict[str, dict[int, int]] = {}
        self._words: dict[int, list[str]] = {}

    def __contains__(self, number: int) -> bool:
        """Whether a document is indexed under this number."""
        return number in self.lengths

    def __len__(self) -> int:
        """How many documents are indexed."""
        return len(self.lengths)

    def add(self, number: int, document: str) -> None:
        """Index a document under its number (again: no change)."""
        if number in self.lengths:
            return
        counts = Counter(words(document))
        self.lengths[number] = sum(counts.values())
        self._words[number] = list(counts)
        for word, count in counts.items():
            self.postings.setdefault(word, {})[number] = count

    def remove(self, number: int) -> None:
        """Forget a document (unknown: no change)."""
        if self.lengths.pop(number, None) is None:
            return
        for word in self._words.pop(number):
            hits = self.postings[word]
            del hits[number]
            if not hits:
                del self.postings[word]

    def rank(self, query: str, allowed: Callable[[int], bool], limit: int) -> list[int]:
        """The allowed documents that share a word with the query, best BM25 score first (a
        newer, i.e. higher-numbered, document first on a tie); at most `limit`."""
        terms = set(words(query))
        postings = {
            term: [(n, c) for n, c in self.postings.get(term, {}).items() if allowed(n)]
            for term in terms
        }
        seen = {number for hits in postings.values() for number, _ in hits}
        if not seen:
            return []
        average = sum(self.lengths[n] for n in seen) / len(seen) or 1.0
        total = sum(1 for n in self.lengths if allowed(n))
        scores: dict[int, float] = {}
        for hits in postings.values():
            if not hits:
                continue
            idf = math.log(1 + (total - len(hits) + 0.5) / (len(hits) + 0.5))
            for number, count in hits:
                norm = K1 * (1 - B + B * self.lengths[number] / average)
                scores[number] = scores.get(number, 0.0) + idf * count * (K1 + 1) / (count + norm)
        ranked = sorted(scores, key=lambda n: (-scores[n], -n))
        return ranked[:limit]
