"""Query spelling correction against the catalog's words, alone and inside the pipeline."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from indexer.catalog import Product, TextTemplate
from indexer.stores.base import Hit, ModelIdentity, SearchFilter
from indexer.stores.lexical import WordUse
from ranker.pipeline import SearchPipeline
from ranker.settings import RerankSettings, RetrievalSettings
from ranker.spelling import QuerySpeller, max_distance

NAMING = {
    "toilet": 40,
    "seat": 30,
    "seats": 12,
    "door": 50,
    "dour": 1,
    "ryobi": 20,
    "drill": 25,
    "wheelbarrow": 5,
    "faucet": 9,
    "shower": 15,
    "mower": 6,
    "mowed": 2,
    "l18v": 3,
    "2x4": 7,
    "battery": 4,
    "tub": 8,
    "fire": 30,
    "stick": 12,
}
VOCABULARY = {word: WordUse(uses + 1, uses) for word, uses in NAMING.items()}
VOCABULARY["gireatick"] = WordUse(1, 0)  # a typo in one product's description
VOCABULARY["wheelbarows"] = WordUse(1, 0)


@pytest.fixture
def speller() -> QuerySpeller:
    return QuerySpeller(VOCABULARY)


@pytest.mark.parametrize(
    ("typed", "corrected"),
    [
        ("toliet", "toilet"),  # two neighbours swapped: one edit
        ("dooor", "door"),  # one letter too many
        ("roybi", "ryobi"),
        ("wheelbarow", "wheelbarrow"),  # 10 letters: two edits allowed, one needed
        ("dhower", "shower"),  # the first letter too
    ],
)
def test_a_word_the_catalog_never_uses_becomes_its_nearest_word(
    speller: QuerySpeller, typed: str, corrected: str
) -> None:
    assert speller.suggest(typed) == corrected


def test_of_equally_near_words_the_one_more_products_use_wins(speller: QuerySpeller) -> None:
    # "mowe" is one edit from "mower" (6 products) and from "mowed" (2)
    assert speller.suggest("mowe") == "mower"
    # "doer" is one edit from "door" (50) and "dour" (1)
    assert speller.suggest("doer") == "door"


def test_what_is_never_corrected(speller: QuerySpeller) -> None:
    assert speller.suggest("toilet") is None  # the catalog uses it
    assert speller.suggest("sink") is None  # nothing near enough
    assert speller.suggest("dor") is None  # under four letters
    assert speller.suggest("l19v") is None  # not alphabetic: a model code
    assert speller.suggest("2x6") is None
    assert speller.suggest("tailit") is None  # two edits of a 6-letter word
    assert speller.suggest("drills") is None  # a plural of a word it uses: BM25 stems it
    assert speller.suggest("faucetes") is None
    assert speller.suggest("batteries") is None  # battery
    assert speller.suggest("tubs") is None  # tub
    assert speller.suggest("tubx") is None  # "tub" is one edit away, but too short


def test_words_only_descriptions_use_are_known_but_never_a_correction(
    speller: QuerySpeller,
) -> None:
    assert speller.suggest("wheelbarows") is None  # known: some description uses it
    assert speller.suggest("wheelbarrov") == "wheelbarrow"  # not "wheelbarows"
    assert speller.suggest("gireatik") is None  # one edit from a description's typo only


def test_a_word_run_together_is_split_in_two_the_catalog_uses(speller: QuerySpeller) -> None:
    # "firestick" is two edits from the description typo "gireatick", one (a space) from
    # "fire stick"
    assert speller.suggest("firestick") == "fire stick"
    assert speller.suggest("toiletseat") == "toilet seat"
    spelled = speller.correct("Firestick remote")
    assert spelled is not None
    assert spelled.text == "fire stick remote"
    assert spelled.lexical == "fire stick remote firestick"


def test_the_shop_can_name_words_never_to_correct() -> None:
    speller = QuerySpeller(VOCABULARY, exceptions=["Doer", "firestick"])

    assert speller.suggest("doer") is None
    assert speller.suggest("firestick") is None
    assert speller.suggest("dooor") == "door"


def test_the_edit_budget_grows_with_the_word() -> None:
    assert [max_distance("x" * n) for n in (4, 7, 8, 12)] == [1, 1, 2, 2]


def test_the_query_keeps_what_it_does_not_correct(speller: QuerySpeller) -> None:
    spelled = speller.correct("Toliet SEATS for the Roybi 2x4")

    assert spelled is not None
    assert spelled.text == "toilet SEATS for the ryobi 2x4"
    assert spelled.corrections == (("toliet", "toilet"), ("roybi", "ryobi"))
    assert spelled.lexical == "toilet SEATS for the ryobi 2x4 toliet roybi"
    assert speller.correct("toilet seats") is None
    assert speller.correct("") is None


def test_corrections_are_remembered(speller: QuerySpeller) -> None:
    speller.suggest("toliet")
    speller._by_length.clear()  # a second lookup that scanned would now find nothing

    assert speller.suggest("toliet") == "toilet"


PRODUCTS = {pid: Product(id=pid, title=f"product {pid}") for pid in "abc"}


class _Recording:
    """A store or model that records the query text it is given."""

    identity = ModelIdentity("fake", "0" * 64, 2)
    dimension = 2

    def __init__(self) -> None:
        self.queries: list[str] = []

    def __len__(self) -> int:
        return len(PRODUCTS)

    def embed_query(self, query: str) -> np.ndarray:
        self.queries.append(query)
        return np.ones(2, dtype=np.float32)

    def search(self, query: Any, k: int, search_filter: SearchFilter | None = None) -> list[Hit]:
        if isinstance(query, str):
            self.queries.append(query)
        return [Hit(p, 1.0 / (rank + 1)) for rank, p in enumerate(list(PRODUCTS)[:k])]

    def get_many(self, ids: Sequence[str]) -> list[Product | None]:
        return [PRODUCTS.get(i) for i in ids]

    prior: Any = None

    def score(self, query: str, documents: Sequence[str]) -> np.ndarray:
        self.queries.append(query)
        return np.zeros(len(documents), dtype=np.float32)


def test_the_pipeline_searches_and_reranks_the_corrected_query(speller: QuerySpeller) -> None:
    embedder, lexical, reranker = _Recording(), _Recording(), _Recording()
    pipeline = SearchPipeline(
        embedder=embedder,  # type: ignore[arg-type]
        vector_store=_Recording(),  # type: ignore[arg-type]
        lexical_index=lexical,  # type: ignore[arg-type]
        product_store=_Recording(),  # type: ignore[arg-type]
        template=TextTemplate("{title}"),
        retrieval=RetrievalSettings(),
        rerank=RerankSettings(depth=2),
        reranker=reranker,  # type: ignore[arg-type]
        speller=speller,
    )

    outcome = pipeline.search("toliet seat", k=3)

    assert outcome.corrected_query == "toilet seat"
    assert embedder.queries == ["toilet seat"]
    assert lexical.queries == ["toilet seat toliet"]
    assert reranker.queries == ["toilet seat"]
    assert pipeline.with_reranker(None).speller is speller

    as_typed = pipeline.search("toliet seat", k=3, correct_spelling=False)
    assert as_typed.corrected_query is None
    assert lexical.queries[-1] == "toliet seat"
    assert [h.product_id for h in pipeline.retrieve("toliet", k=1)] == ["a"]
    assert lexical.queries[-1] == "toilet toliet"
