"""PairTokenizer on MiniLM's tokenizer, length-sorted batches and dynamic padding."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from ranker.model_files import base_model_dir
from ranker.tokenization import PairTokenizer, length_sorted_batches, pad_batch

MAX_LENGTH = 32
CLS, SEP, PAD = 101, 102, 0

QUERY = "stainless steel chef knife 8 inch"
LONG_DOCUMENT = " ".join(f"feature{i} of this very durable kitchen product" for i in range(40))


@pytest.fixture(scope="module")
def tokenizer() -> PairTokenizer:
    return PairTokenizer.from_model_dir(base_model_dir(), max_length=MAX_LENGTH)


@functools.cache
def _reference() -> Tokenizer:
    """MiniLM's tokenizer, loaded on its own, with no truncation and no padding."""
    reference = Tokenizer.from_file(str(base_model_dir() / "tokenizer.json"))
    reference.no_truncation()
    reference.no_padding()
    return reference


def pieces(text: str) -> list[int]:
    """Word-piece ids of ``text``: no special tokens, no truncation."""
    return list(_reference().encode(text, add_special_tokens=False).ids)


def test_from_model_dir_needs_a_tokenizer_json(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no tokenizer\.json"):
        PairTokenizer.from_model_dir(tmp_path, max_length=MAX_LENGTH)


def test_pad_id_is_bert_pad(tokenizer: PairTokenizer) -> None:
    assert tokenizer.pad_id == PAD


# ------------------------------------------------------------------ pairs


def test_encode_pairs_keeps_the_whole_query_and_trims_the_document(
    tokenizer: PairTokenizer,
) -> None:
    query_ids = pieces(QUERY)

    (encoding,) = tokenizer.encode_pairs(QUERY, [LONG_DOCUMENT])

    ids = list(encoding.ids)
    assert len(ids) == MAX_LENGTH
    assert ids[: len(query_ids) + 2] == [CLS, *query_ids, SEP]
    assert ids[-1] == SEP
    document_ids = ids[len(query_ids) + 2 : -1]
    assert len(document_ids) == MAX_LENGTH - len(query_ids) - 3
    assert tokenizer.count_tokens([LONG_DOCUMENT])[0] - 2 > len(document_ids)
    # The document's first pieces are kept: it is cut at the end.
    full_document = pieces(LONG_DOCUMENT)
    assert document_ids == full_document[: len(document_ids)]


def test_encode_pairs_type_ids_mark_the_document(tokenizer: PairTokenizer) -> None:
    query_length = len(pieces(QUERY)) + 2

    (encoding,) = tokenizer.encode_pairs(QUERY, [LONG_DOCUMENT])

    assert list(encoding.type_ids) == [0] * query_length + [1] * (MAX_LENGTH - query_length)


def test_encode_pairs_does_not_pad_short_documents(tokenizer: PairTokenizer) -> None:
    encodings = tokenizer.encode_pairs(QUERY, ["red mug", LONG_DOCUMENT, ""])

    query_length = len(pieces(QUERY)) + 2
    assert [len(e.ids) for e in encodings] == [query_length + 3, MAX_LENGTH, query_length + 1]
    assert PAD not in encodings[0].ids


def test_encode_pairs_one_encoding_per_document_in_order(tokenizer: PairTokenizer) -> None:
    documents = ["red mug", "blue kettle", "green teapot"]

    encodings = tokenizer.encode_pairs("tea", documents)

    assert [e.ids[3:-1] for e in encodings] == [pieces(d) for d in documents]
    assert tokenizer.encode_pairs("tea", []) == []


def test_encode_texts_truncates_to_max_length(tokenizer: PairTokenizer) -> None:
    short, long = tokenizer.encode_texts(["red mug", LONG_DOCUMENT])

    assert list(short.ids) == [CLS, *pieces("red mug"), SEP]
    assert len(long.ids) == MAX_LENGTH
    assert long.ids[0] == CLS
    assert long.ids[-1] == SEP
    assert set(long.type_ids) == {0}


def test_single_and_pair_settings_do_not_interfere(tokenizer: PairTokenizer) -> None:
    before = tokenizer.encode_texts([LONG_DOCUMENT])[0].ids
    tokenizer.encode_pairs(QUERY, [LONG_DOCUMENT])

    assert tokenizer.encode_texts([LONG_DOCUMENT])[0].ids == before
    assert tokenizer.count_tokens([LONG_DOCUMENT])[0] > MAX_LENGTH


# ------------------------------------------------------------------ counting and cutting


def test_count_tokens_counts_special_tokens_and_never_truncates(
    tokenizer: PairTokenizer,
) -> None:
    counts = tokenizer.count_tokens(["", "red mug", LONG_DOCUMENT])

    assert counts[0] == 2
    assert counts[1] == len(pieces("red mug")) + 2
    assert counts[2] > MAX_LENGTH
    assert tokenizer.count_tokens([]) == []


def test_truncate_text_leaves_short_text_alone(tokenizer: PairTokenizer) -> None:
    text = "  Red MUG, 12 oz  "

    assert tokenizer.truncate_text(text, 48) is text
    assert tokenizer.truncate_text(text, len(pieces(text))) is text


@pytest.mark.parametrize("max_tokens", [1, 3, 10, 40])
def test_truncate_text_cuts_to_max_tokens(tokenizer: PairTokenizer, max_tokens: int) -> None:
    text = "Unaffordable STAINLESS-steel knives, set of 12: " + LONG_DOCUMENT

    cut = tokenizer.truncate_text(text, max_tokens)

    assert text.startswith(cut)
    assert cut == cut.rstrip()
    assert tokenizer.count_tokens([cut])[0] - 2 == max_tokens
    # The cut keeps exactly the first word pieces of the original.
    original = pieces(text)
    assert pieces(cut) == original[:max_tokens]


def test_truncate_text_keeps_the_original_characters(tokenizer: PairTokenizer) -> None:
    # The tokenizer lowercases and strips accents; the cut is of the original text.
    assert tokenizer.truncate_text("Café AU LAIT mug", 2) == "Café AU"


@pytest.mark.parametrize("max_tokens", [1, 3, 10, 40])
def test_truncate_text_from_the_left_keeps_the_last_whole_words(
    tokenizer: PairTokenizer, max_tokens: int
) -> None:
    text = "Unaffordable STAINLESS-steel knives, set of 12: " + LONG_DOCUMENT

    cut = tokenizer.truncate_text(text, max_tokens, side="left")

    assert text.endswith(cut)
    kept = pieces(cut)
    assert 0 < len(kept) <= max_tokens
    assert pieces(text)[-len(kept) :] == kept


def test_truncate_text_from_the_left_starts_inside_a_word_only_when_it_must(
    tokenizer: PairTokenizer,
) -> None:
    assert tokenizer.truncate_text("red mug", 1, side="left") == "mug"
    assert tokenizer.truncate_text("big red unaffordable mug", 3, side="left") == "mug"
    # "unaffordable" is several pieces and no word starts among its last two.
    cut = tokenizer.truncate_text("red unaffordable", 2, side="left")
    assert "unaffordable".endswith(cut)
    assert cut
    assert tokenizer.truncate_text("red mug", 0, side="left") == ""


def test_tokenize_gives_whole_encodings_with_offsets(tokenizer: PairTokenizer) -> None:
    text = "red mug " * 100

    with_specials = tokenizer.tokenize([text])[0]
    bare = tokenizer.tokenize([text], add_special_tokens=False)[0]

    assert len(with_specials.ids) == len(bare.ids) + 2 > tokenizer.max_length
    assert with_specials.tokens[0] == "[CLS]"
    start, stop = bare.offsets[1]
    assert text[start:stop] == "mug"


def test_truncate_text_to_zero_tokens(tokenizer: PairTokenizer) -> None:
    assert tokenizer.truncate_text("red mug", 0) == ""
    assert tokenizer.truncate_text("", 0) == ""


def test_truncate_text_refuses_a_negative_limit(tokenizer: PairTokenizer) -> None:
    with pytest.raises(ValueError, match="max_tokens must be >= 0"):
        tokenizer.truncate_text("red mug", -1)


# ------------------------------------------------------------------ batches


@pytest.mark.parametrize("batch_size", [1, 2, 3, 4, 7, 100])
def test_length_sorted_batches_cover_every_index_once(batch_size: int) -> None:
    lengths = [5, 17, 3, 17, 9, 1, 12, 9, 30, 2, 8]

    batches = length_sorted_batches(lengths, batch_size)

    flat = [int(i) for batch in batches for i in batch]
    assert sorted(flat) == list(range(len(lengths)))
    assert all(1 <= len(batch) <= batch_size for batch in batches)
    assert all(len(batch) == batch_size for batch in batches[:-1])
    ordered = [lengths[i] for i in flat]
    assert ordered == sorted(lengths, reverse=True)


def test_length_sorted_batches_keep_input_order_among_equal_lengths() -> None:
    batches = length_sorted_batches([4, 9, 4, 9, 4], 2)

    assert [batch.tolist() for batch in batches] == [[1, 3], [0, 2], [4]]


def test_length_sorted_batches_of_nothing() -> None:
    assert length_sorted_batches([], 8) == []


@pytest.mark.parametrize("batch_size", [0, -1])
def test_length_sorted_batches_refuse_a_bad_batch_size(batch_size: int) -> None:
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        length_sorted_batches([1, 2], batch_size)


def test_pad_batch_pads_to_the_longest_member_only(tokenizer: PairTokenizer) -> None:
    encodings = tokenizer.encode_pairs("tea", ["red mug", "a big blue ceramic kettle", ""])
    lengths = [len(e.ids) for e in encodings]
    width = max(lengths)
    assert width < MAX_LENGTH

    batch = pad_batch(encodings, pad_id=7)

    assert batch.shape == (3, width)
    for array in (batch.input_ids, batch.attention_mask, batch.token_type_ids):
        assert array.shape == (3, width)
        assert array.dtype == np.int64
    for row, (encoding, length) in enumerate(zip(encodings, lengths, strict=True)):
        assert batch.input_ids[row, :length].tolist() == list(encoding.ids)
        assert batch.input_ids[row, length:].tolist() == [7] * (width - length)
        assert batch.attention_mask[row].tolist() == [1] * length + [0] * (width - length)
        assert batch.token_type_ids[row, :length].tolist() == list(encoding.type_ids)
        assert batch.token_type_ids[row, length:].tolist() == [0] * (width - length)
    assert batch.token_type_ids.max() == 1


def test_pad_batch_of_equal_lengths_has_no_padding(tokenizer: PairTokenizer) -> None:
    encodings = tokenizer.encode_texts([LONG_DOCUMENT, LONG_DOCUMENT + " more"])

    batch = pad_batch(encodings, pad_id=tokenizer.pad_id)

    assert batch.shape == (2, MAX_LENGTH)
    assert batch.attention_mask.all()
    assert not batch.token_type_ids.any()


@pytest.mark.parametrize("max_length", [8, 48, 128])
def test_documents_cut_before_encoding_give_the_full_texts_pieces(max_length: int) -> None:
    from bench.common import product_texts

    texts = list(product_texts().values())[:300]
    texts += ["x" * 5000, "word " * 3000, "Crème brûlée, 12-pack!" * 200, "", "short"]
    ours = PairTokenizer.from_model_dir(base_model_dir(), max_length=max_length)
    reference = Tokenizer.from_file(str(base_model_dir() / "tokenizer.json"))
    reference.no_padding()
    reference.enable_truncation(max_length)

    expected = reference.encode_batch(texts, add_special_tokens=False)
    for text, theirs, mine in zip(texts, expected, ours.encode_documents(texts), strict=True):
        assert mine.ids == theirs.ids, text[:80]


@pytest.mark.parametrize("max_length", [8, 48, 128])
def test_single_texts_cut_before_encoding_give_the_full_texts_ids(max_length: int) -> None:
    from bench.common import product_texts

    texts = list(product_texts().values())[:300]
    texts += ["x" * 5000, "word " * 3000, "Crème brûlée, 12-pack!" * 200, "", "short"]
    ours = PairTokenizer.from_model_dir(base_model_dir(), max_length=max_length)
    reference = Tokenizer.from_file(str(base_model_dir() / "tokenizer.json"))
    reference.no_padding()
    reference.enable_truncation(max_length)

    expected = reference.encode_batch(texts)
    for text, theirs, mine in zip(texts, expected, ours.encode_texts(texts), strict=True):
        assert mine.ids == theirs.ids, text[:80]
        assert mine.type_ids == theirs.type_ids
