"""Cheap checks that run before any model does: empty, too long, too many."""

from __future__ import annotations

from collections.abc import Sequence

from ranker.api.errors import EmptyInputError, InputTooLargeError
from ranker.settings import ApiSettings
from ranker.tokenization import PairTokenizer


def require_text(value: str, *, what: str) -> str:
    """``value`` stripped; an empty one is refused."""
    stripped = value.strip()
    if not stripped:
        raise EmptyInputError(f"{what} is empty")
    return stripped


def check_query(
    query: str, *, limits: ApiSettings, tokenizer: PairTokenizer | None, truncate: bool
) -> str:
    """The query, cut to the limits when ``truncate``, else refused when over them."""
    query = require_text(query, what="query")
    if len(query) > limits.max_query_chars:
        if not truncate:
            raise InputTooLargeError(
                f"query has {len(query)} characters; the limit is {limits.max_query_chars} "
                "(send truncate=true to cut it)"
            )
        query = query[: limits.max_query_chars]
    if tokenizer is not None:
        tokens = tokenizer.count_tokens([query])[0] - 2
        if tokens > limits.max_query_tokens:
            if not truncate:
                raise InputTooLargeError(
                    f"query has {tokens} tokens; the limit is {limits.max_query_tokens} "
                    "(send truncate=true to cut it)"
                )
            query = tokenizer.truncate_text(query, limits.max_query_tokens)
    return query


def check_documents(
    documents: Sequence[str],
    *,
    limits: ApiSettings,
    tokenizer: PairTokenizer | None,
    max_tokens: int | None,
    truncate: bool,
    what: str = "documents",
    max_count: int | None = None,
) -> list[str]:
    """Documents checked for count, emptiness and length; cut when ``truncate``.

    ``max_count`` overrides ``limits.max_documents`` (embedding has its own limit).
    ``max_tokens`` is what the model reads of each document; beyond it the text would be
    cut by the model's own truncation, so with ``truncate=False`` it is refused instead.
    """
    if not documents:
        raise EmptyInputError(f"{what} is empty")
    limit = limits.max_documents if max_count is None else max_count
    if len(documents) > limit:
        raise InputTooLargeError(f"{len(documents)} {what}; the limit per call is {limit}")
    checked = []
    for index, document in enumerate(documents):
        if not document.strip():
            raise EmptyInputError(f"{what}[{index}] is empty")
        if len(document) > limits.max_document_chars:
            if not truncate:
                raise InputTooLargeError(
                    f"{what}[{index}] has {len(document)} characters; the limit is "
                    f"{limits.max_document_chars} (send truncate=true to cut it)"
                )
            document = document[: limits.max_document_chars]
        checked.append(document)
    if not truncate and tokenizer is not None and max_tokens is not None:
        for index, count in enumerate(tokenizer.count_tokens(checked)):
            if count > max_tokens:
                raise InputTooLargeError(
                    f"{what}[{index}] has {count} tokens; the model reads at most {max_tokens} "
                    "(send truncate=true to cut it)"
                )
    return checked


def check_filter_values(values: Sequence[str], *, limits: ApiSettings, what: str) -> None:
    """Refuse a filter list longer than ``limits.max_filter_values`` (413)."""
    if len(values) > limits.max_filter_values:
        raise InputTooLargeError(
            f"{what} has {len(values)} values; the limit is {limits.max_filter_values}"
        )
