"""The dense prior reads indexed products' vectors by their text instead of embedding them."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from indexer.catalog import Product, TextTemplate
from indexer.stores.base import FloatMatrix, ModelIdentity, StoreError
from ranker.catalog_vectors import CatalogVectors
from ranker.embedder import Embedder
from ranker.reranker import Reranker

TEMPLATE = TextTemplate("{title}\nBrand: {brand}")
PRODUCTS = [
    Product(id="p1", title="Chef knife 8 inch", brand="Victorinox"),
    Product(id="p2", title="Red ceramic mug"),
    Product(id="p3", title="Butane torch", brand="Iwatani"),
]


class _Store:
    """A StoredVectors with fixed vectors, counting its reads."""

    def __init__(self, vectors: dict[str, np.ndarray], *, fail: bool = False) -> None:
        dimension = len(next(iter(vectors.values())))
        self.identity = ModelIdentity("tiny", "-", dimension)
        self._vectors = vectors
        self.fail = fail
        self.reads: list[list[str]] = []

    def vectors(self, product_ids: Sequence[str]) -> FloatMatrix:
        self.reads.append(list(product_ids))
        if self.fail:
            raise StoreError("product gone")
        return np.stack([self._vectors[pid] for pid in product_ids]).astype(np.float32)


def _store(dimension: int = 4) -> _Store:
    rng = np.random.default_rng(0)
    return _Store({p.id: rng.normal(size=dimension).astype(np.float32) for p in PRODUCTS})


def test_finds_products_by_their_rendered_text_only() -> None:
    store = _store()
    catalog = CatalogVectors.build(PRODUCTS, TEMPLATE, store)
    texts = [TEMPLATE.render(PRODUCTS[2]), "Red ceramic mug!", TEMPLATE.render(PRODUCTS[0])]

    assert len(catalog) == 3
    assert catalog.find(texts) == ["p3", None, "p1"]
    found = catalog.vectors(texts)
    assert found[1] is None
    np.testing.assert_array_equal(found[0], store.vectors(["p3"])[0])
    np.testing.assert_array_equal(found[2], store.vectors(["p1"])[0])
    assert catalog.find([]) == []


def test_a_store_that_cannot_answer_means_embedding_every_text() -> None:
    catalog = CatalogVectors.build(PRODUCTS, TEMPLATE, _store())
    catalog.store = _Store({"p1": np.ones(4)}, fail=True)

    assert catalog.vectors([TEMPLATE.render(PRODUCTS[0])]) == [None]


def test_the_prior_embeds_only_texts_the_catalog_lacks(
    tiny_reranker_dir: Path,
    tiny_embedder_dir: Path,
    tmp_path: Path,
    with_prior: Callable[..., Path],
) -> None:
    model = with_prior(tiny_reranker_dir, tiny_embedder_dir, tmp_path)
    embedder = Embedder.load(tiny_embedder_dir, backend="torch")
    reranker = Reranker.load(model, embedder=embedder, backend="torch")
    assert reranker.prior is not None
    texts = [TEMPLATE.render(p) for p in PRODUCTS]
    own_vectors = embedder.embed(texts)
    store = _Store({p.id: v for p, v in zip(PRODUCTS, own_vectors, strict=True)})
    plain = reranker.score("kitchen knife", [*texts, "an unindexed text"])

    embedded: list[list[str]] = []
    original_embed = embedder.embed

    def counting_embed(batch: Sequence[str], **kwargs: object) -> np.ndarray:
        embedded.append(list(batch))
        return original_embed(batch, **kwargs)  # type: ignore[arg-type]

    embedder.embed = counting_embed  # type: ignore[method-assign]
    reranker.prior = dataclasses.replace(
        reranker.prior, catalog=CatalogVectors.build(PRODUCTS, TEMPLATE, store)
    )
    with_catalog = reranker.score("kitchen knife", [*texts, "an unindexed text"])

    np.testing.assert_allclose(with_catalog, plain, atol=1e-5)
    assert embedded == [["kitchen knife"], ["an unindexed text"]]
    assert store.reads == [["p1", "p2", "p3"]]


def test_mismatched_digests_and_ids_are_refused() -> None:
    with pytest.raises(ValueError, match="digests"):
        CatalogVectors(np.zeros(2, dtype=np.uint64), ["p1"], _store())
