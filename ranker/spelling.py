"""Query spelling correction against the catalog's own words ("showing results for").

Shoppers misspell: a quarter of Home Depot's judged queries have a word its catalog never
uses ("toliet seats", "roybi drill"). A query word is corrected when the catalog does not
use it, nor the word without a plural ending (BM25 stems those), it is alphabetic and has
at least :data:`MIN_LENGTH` letters. Its correction is the nearest of:

- a word that names products (in a title, brand, color or category; descriptions are
  free text with typos of their own), of at least :data:`MIN_LENGTH` letters, within
  :func:`max_distance` edits (Damerau's optimal string alignment: an insertion, deletion,
  substitution or swap of neighbours counts one);
- the word split in two words the catalog uses, of at least :data:`MIN_PART` letters each
  ("firestick": "fire stick"), one edit (the space).

The nearer wins, then the one naming more products (a split counts its rarer part), then
the alphabetically first. Words the catalog uses, numbers, model codes and short words
never change.

The corrected query is what retrieval embeds and the reranker reads. Lexical retrieval
ORs the original word beside its correction, so a product indexed since the speller read
the vocabulary still matches the word as typed. Edit distances come from RapidFuzz.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from rapidfuzz import process
from rapidfuzz.distance import OSA

from indexer.caching import TextCache
from indexer.stores.lexical import WORD, WordUse

MIN_LENGTH = 4
"""Shorter words are never corrected, nor corrected to: too many lie one edit apart."""
MIN_PART = 3
"""The shortest part of a word split in two."""


def max_distance(word: str) -> int:
    """Edits allowed to correct ``word``: 1 up to 7 letters, 2 from 8 (stricter than Lucene's
    fuzzy AUTO, which allows 2 from 6: two edits of a 6-letter word are often another
    real word)."""
    return 1 if len(word) < 8 else 2


@dataclass(frozen=True, slots=True)
class SpelledQuery:
    """A query with its misspelled words corrected."""

    text: str
    """The query, each corrected word replaced (lowercase), the rest as typed."""
    corrections: tuple[tuple[str, str], ...]
    """(word as typed, lowercased; its correction), in query order."""

    @property
    def lexical(self) -> str:
        """What lexical retrieval searches: the corrected query and the words as typed (it
        ORs words, so either matches)."""
        return " ".join([self.text, *(typed for typed, _ in self.corrections)])


class QuerySpeller:
    """Corrects queries against the catalog's vocabulary (word -> its :class:`WordUse`)."""

    def __init__(
        self,
        vocabulary: Mapping[str, WordUse],
        *,
        exceptions: Iterable[str] = (),
        cache_size: int = 10_000,
    ) -> None:
        """``exceptions``: words never corrected, as if the catalog used them."""
        self._known = frozenset(vocabulary) | {word.lower() for word in exceptions}
        self._named = {word: use.named for word, use in vocabulary.items() if use.named > 0}
        by_length: dict[int, list[str]] = {}
        for word in self._named:
            if word.isalpha() and len(word) >= MIN_LENGTH:
                by_length.setdefault(len(word), []).append(word)
        self._by_length = {length: sorted(words) for length, words in by_length.items()}
        self._cache: TextCache[str] = TextCache(cache_size)

    def __len__(self) -> int:
        return len(self._known)

    def correct(self, query: str) -> SpelledQuery | None:
        """``query`` with its misspelled words corrected; None when none is."""
        corrections: dict[str, str] = {}
        for match in WORD.finditer(query):
            typed = match.group(0).lower()
            if typed not in corrections:
                suggestion = self.suggest(typed)
                if suggestion is not None:
                    corrections[typed] = suggestion
        if not corrections:
            return None
        text = WORD.sub(lambda m: corrections.get(m.group(0).lower(), m.group(0)), query)
        return SpelledQuery(text, tuple(corrections.items()))

    def suggest(self, word: str) -> str | None:
        """The correction of one lowercase word (one word, or two split by a space), or None
        when it stays as it is."""
        if len(word) < MIN_LENGTH or not word.isalpha() or self._knows(word):
            return None
        cached = self._cache.get(word)
        if cached is None:
            cached = self._nearest(word) or word
            self._cache.put(word, cached)
        return cached if cached != word else None

    def _knows(self, word: str) -> bool:
        """Whether the catalog uses ``word``, or its singular (drills, boxes, batteries)."""
        singulars = (word[:-1], word[:-2], word[:-3] + "y") if word.endswith("s") else ()
        return word in self._known or any(s in self._known for s in singulars)

    def _nearest(self, word: str) -> str | None:
        limit = max_distance(word)
        candidates: list[tuple[int, int, str]] = []
        for length in range(len(word) - limit, len(word) + limit + 1):
            choices = self._by_length.get(length)
            if choices:
                found = process.extract(
                    word, choices, scorer=OSA.distance, score_cutoff=limit, limit=None
                )
                candidates += [(int(d), -self._named[c], c) for c, d, _ in found]
        for cut in range(MIN_PART, len(word) - MIN_PART + 1):
            left, right = word[:cut], word[cut:]
            if self._knows(left) and self._knows(right):
                uses = min(self._named.get(left, 0), self._named.get(right, 0))
                candidates.append((1, -uses, f"{left} {right}"))
        return min(candidates)[2] if candidates else None
