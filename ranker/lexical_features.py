"""Lexical match features of a query against product texts, for the reranker's prior.

A bi-encoder compresses a product into one vector and misses what a shopper spells out:
the exact words and numbers of the query, and what the query rules out ("paper bags
without handles"). These features measure both from the text alone, so the reranker's
prior computes them the same way in training, in search and behind ``/v1/rerank``:

- ``title_coverage``: the share of the query's words found in the title, the text's first
  line (the default text template starts with the title);
- ``text_coverage``: the share found anywhere in the text;
- ``negated_in_title``: 1 when the title names a word the query negates (the word after
  "without", "no", "not" or "non"), else 0. Negated words do not count as coverage.

Words are lower-cased letter-and-digit runs (``1/2``, ``2.5`` and ``3,000`` stay whole);
a trailing plural ``s`` is dropped from words longer than three letters.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from indexer.caching import TextCache
from ranker.backends.base import FloatArray

LEXICAL_FEATURES = ("title_coverage", "text_coverage", "negated_in_title")
NEGATIONS = frozenset({"without", "no", "not", "non"})
_WORD = re.compile(r"[a-z0-9]+(?:[.,/][0-9]+)*")

DocumentWords = tuple[frozenset[str], frozenset[str]]
"""A product text's title words (its first line's) and all its words."""


def words(text: str) -> list[str]:
    """The text's words, lower-cased, with a plural ``s`` dropped (see the module doc)."""
    found = []
    for word in _WORD.findall(text.lower()):
        if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        found.append(word)
    return found


def title_line(document: str) -> str:
    """``document``'s title: its first line (the default text template starts with it)."""
    return document.partition("\n")[0]


def document_words(document: str) -> DocumentWords:
    """The words of ``document``'s title (its first line) and of the whole text."""
    return frozenset(words(title_line(document))), frozenset(words(document))


def lexical_features(
    query: str,
    documents: Sequence[str],
    *,
    cache: TextCache[DocumentWords] | None = None,
) -> FloatArray:
    """``(len(documents), len(LEXICAL_FEATURES))`` features, columns as named there;
    ``cache`` keeps each document's words between calls."""
    query_words = words(query)
    negated = {query_words[i + 1] for i, word in enumerate(query_words[:-1]) if word in NEGATIONS}
    wanted = [word for word in query_words if word not in NEGATIONS and word not in negated]
    features = np.zeros((len(documents), len(LEXICAL_FEATURES)), dtype=np.float32)
    found = (
        cache.get_many(documents, lambda texts: [document_words(text) for text in texts])
        if cache is not None
        else [document_words(document) for document in documents]
    )
    for row, (title, text) in enumerate(found):
        if wanted:
            features[row, 0] = sum(word in title for word in wanted) / len(wanted)
            features[row, 1] = sum(word in text for word in wanted) / len(wanted)
        features[row, 2] = float(bool(negated & title))
    return features
