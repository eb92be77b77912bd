"""Tokenization for both encoders: truncation, length-sorted micro-batches, dynamic padding."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from tokenizers import Encoding, Tokenizer

from indexer.caching import TextCache
from ranker.backends.base import TokenBatch

FIRST_CUT_CHARS_PER_PIECE = 5
"""Characters allowed per kept word piece in the first cut of a long document (pieces
average about 4 characters in catalog text); a cut that proves short is doubled."""


class TextTooLongError(ValueError):
    """A text over its token limit when the caller asked for no truncation."""


class PairTokenizer:
    """A fast HF tokenizer set up for single texts and for (query, document) pairs.

    Pairs keep the whole query and trim only the document ("only_second"). A pair is built
    from the query's word pieces, encoded once per request, and each document's word pieces,
    which stay in a bounded LRU cache (``cache_size`` texts) since products recur between
    queries.
    """

    def __init__(self, tokenizer: Tokenizer, *, max_length: int, cache_size: int = 0) -> None:
        self._single = tokenizer
        self.max_length = max_length
        self._single.no_padding()
        self._single.enable_truncation(max_length)
        # A second instance so single and pair truncation settings never race across threads.
        self._pair = Tokenizer.from_str(tokenizer.to_str())
        self._pair.no_padding()
        self._pair.enable_truncation(max_length, strategy="only_second")
        self._counter = Tokenizer.from_str(tokenizer.to_str())
        self._counter.no_padding()
        self._counter.no_truncation()
        # Document word pieces, without special tokens, never longer than a pair can use.
        self._pieces = Tokenizer.from_str(tokenizer.to_str())
        self._pieces.no_padding()
        self._pieces.enable_truncation(max_length)
        self.pad_id = tokenizer.token_to_id("[PAD]") or 0
        self.document_cache: TextCache[Encoding] = TextCache(cache_size)

    @classmethod
    def from_model_dir(
        cls, model_dir: Path, *, max_length: int, cache_size: int = 0
    ) -> PairTokenizer:
        """Load ``tokenizer.json`` from a model directory."""
        path = model_dir / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(f"{model_dir}: no tokenizer.json")
        return cls(Tokenizer.from_file(str(path)), max_length=max_length, cache_size=cache_size)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Token counts without truncation, special tokens included."""
        return [len(encoding.ids) for encoding in self._counter.encode_batch(list(texts))]

    def truncate_text(
        self, text: str, max_tokens: int, *, side: Literal["right", "left"] = "right"
    ) -> str:
        """``text`` cut to at most ``max_tokens`` word pieces (special tokens excluded).

        ``side``: where pieces are dropped; ``left`` keeps the end of the text, from the
        first whole word among its last ``max_tokens`` pieces (mid-word when none starts
        there).
        """
        if max_tokens < 0:
            raise ValueError(f"max_tokens must be >= 0, got {max_tokens}")
        encoding = self._counter.encode(text, add_special_tokens=False)
        if len(encoding.ids) <= max_tokens:
            return text
        if side == "left":
            if not max_tokens:
                return ""
            words = encoding.word_ids
            first = start = len(words) - max_tokens
            while start < len(words) and words[start] == words[start - 1]:
                start += 1  # not inside a word, where its pieces would change
            return text[encoding.offsets[start if start < len(words) else first][0] :]
        end = encoding.offsets[max_tokens - 1][1] if max_tokens else 0
        return text[:end]

    def tokenize(self, texts: Sequence[str], *, add_special_tokens: bool = True) -> list[Encoding]:
        """Each text's whole encoding (ids, tokens, character offsets), never truncated."""
        return list(self._counter.encode_batch(list(texts), add_special_tokens=add_special_tokens))

    def encode_texts(self, texts: Sequence[str]) -> list[Encoding]:
        """Single texts, truncated to ``max_length``; a long text is cut at a whitespace
        first, as :meth:`encode_documents` does, so the result is the same but a long text
        costs only its first pieces."""
        return _encode_prefixes(
            list(texts),
            lambda prefixes: self._single.encode_batch(prefixes),
            max_chars=self.max_length * FIRST_CUT_CHARS_PER_PIECE,
            enough=self.max_length,
        )

    def encode_query(self, query: str, max_tokens: int) -> tuple[str, Encoding]:
        """The query cut to ``max_tokens`` word pieces, and those pieces: one encoding."""
        if max_tokens < 0:
            raise ValueError(f"max_tokens must be >= 0, got {max_tokens}")
        encoding = self._counter.encode(query, add_special_tokens=False)
        if len(encoding.ids) <= max_tokens:
            return query, encoding
        end = encoding.offsets[max_tokens - 1][1] if max_tokens else 0
        encoding.truncate(max_tokens)
        return query[:end], encoding

    def encode_documents(self, documents: Sequence[str]) -> list[Encoding]:
        """Each document's word pieces (no special tokens), from the cache where it can.

        Only the first ``max_length`` pieces are kept, so a long text is first cut at a
        whitespace after :data:`FIRST_CUT_CHARS_PER_PIECE` characters a piece: the pieces of
        a prefix that ends between words are the full text's first pieces. A prefix that
        gives fewer pieces than are kept is cut again twice as long, until it gives enough
        or is the whole text, so the result never changes.
        """

        def encode(texts: list[str]) -> list[Encoding]:
            return _encode_prefixes(
                texts,
                lambda prefixes: self._pieces.encode_batch(prefixes, add_special_tokens=False),
                max_chars=self.max_length * FIRST_CUT_CHARS_PER_PIECE,
                enough=self.max_length,
            )

        return self.document_cache.get_many(documents, encode)

    def pair_encodings(self, query: Encoding, documents: Sequence[Encoding]) -> list[Encoding]:
        """``[CLS] query [SEP] document [SEP]`` from pieces, the document trimmed to fit."""
        return [self._pair.post_process(query, document) for document in documents]

    def encode_pairs(self, query: str, documents: Sequence[str]) -> list[Encoding]:
        """``(query, document)`` pairs; the query is kept whole, documents are trimmed.

        The caller bounds the query length (see :meth:`truncate_text`), so that a document
        always keeps some room. The query is encoded once, not once per document.
        """
        pieces = self._counter.encode(query, add_special_tokens=False)
        return self.pair_encodings(pieces, self.encode_documents(documents))


def _encode_prefixes(
    texts: list[str],
    encode: Callable[[list[str]], list[Encoding]],
    *,
    max_chars: int,
    enough: int,
) -> list[Encoding]:
    """``encode`` of each text's whitespace prefix of ``max_chars`` characters, cut again
    twice as long while it gives fewer than ``enough`` ids and is not the whole text (so the
    first ids are the whole text's)."""
    encodings: list[Encoding | None] = [None] * len(texts)
    pending = list(range(len(texts)))
    while pending:
        prefixes = [_whitespace_prefix(texts[i], max_chars) for i in pending]
        batch = encode(prefixes)
        short = []
        for i, prefix, encoding in zip(pending, prefixes, batch, strict=True):
            if len(prefix) < len(texts[i]) and len(encoding.ids) < enough:
                short.append(i)
            else:
                encodings[i] = encoding
        pending, max_chars = short, max_chars * 2
    return [encoding for encoding in encodings if encoding is not None]


def _whitespace_prefix(text: str, max_chars: int) -> str:
    """``text`` cut at the last whitespace at or before ``max_chars`` (whole when shorter, or
    when that stretch has no whitespace)."""
    if len(text) <= max_chars:
        return text
    cut = max(text.rfind(" ", 0, max_chars + 1), text.rfind("\n", 0, max_chars + 1))
    return text[:cut] if cut > 0 else text


def length_sorted_batches(
    lengths: Sequence[int], batch_size: int, *, max_tokens: int | None = None
) -> list[npt.NDArray[np.intp]]:
    """Index batches of similar length (longest first), so padding stays small.

    With ``max_tokens``, batches are length buckets under a token budget: a batch holds at
    most ``batch_size`` rows and at most ``max_tokens`` padded tokens (rows times its
    longest), so short inputs run in bigger batches. A row longer than the budget runs alone.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if max_tokens is not None and max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
    sizes = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-sizes, kind="stable")
    if max_tokens is None:
        return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    batches = []
    start = 0
    while start < len(order):
        longest = max(int(sizes[order[start]]), 1)
        rows = max(1, min(batch_size, max_tokens // longest))
        batches.append(order[start : start + rows])
        start += rows
    return batches


def pad_batch(encodings: Sequence[Encoding], *, pad_id: int) -> TokenBatch:
    """Pad a micro-batch to its own longest member (dynamic padding)."""
    width = max(len(encoding.ids) for encoding in encodings)
    shape = (len(encodings), width)
    input_ids = np.full(shape, pad_id, dtype=np.int64)
    attention_mask = np.zeros(shape, dtype=np.int64)
    token_type_ids = np.zeros(shape, dtype=np.int64)
    for row, encoding in enumerate(encodings):
        length = len(encoding.ids)
        input_ids[row, :length] = encoding.ids
        attention_mask[row, :length] = 1
        token_type_ids[row, :length] = encoding.type_ids
    return TokenBatch(
        input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
    )
