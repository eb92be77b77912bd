"""Index jobs on the real stores: full build, identity checks, in-place upserts and deletes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from indexer.catalog import Product, TextTemplate, load_products
from indexer.jobs import (
    IndexLayout,
    OpenedIndex,
    build_index,
    delete_products,
    open_index,
    read_index_manifest,
    upsert_products,
)
from indexer.stores.base import SearchFilter, StoreMismatchError
from indexer.stores.faiss_store import INDEX_NAME
from ranker.embedder import Embedder
from ranker.loading import open_pipeline
from ranker.pipeline import SearchPipeline
from ranker.settings import Settings

CHANGED_TITLE = "Quokka zanzibar lantern"
NEW_PRODUCT = Product(
    id="SHOPRANK-TEST-0001",
    title="Narwhal tessellation teapot",
    brand="Shoprank Test Brand",
    color="Teal",
    category=("Test Things", "Teapots"),
    price=12.5,
)


@pytest.fixture
def index_dir(
    tmp_path: Path,
    catalog_subset: list[Product],
    tiny_embedder: Embedder,
    integration_settings: Settings,
) -> Path:
    """A fresh index of the subset for each test, since the jobs change it."""
    directory = tmp_path / "index"
    build_index(
        catalog_subset,
        directory,
        embedder=tiny_embedder,
        template=TextTemplate(integration_settings.index.text_template),
        source="integration-subset",
        hnsw_threshold=integration_settings.index.hnsw_threshold,
        progress=False,
    )
    return directory


@contextmanager
def _opened(index_dir: Path, embedder: Embedder) -> Iterator[OpenedIndex]:
    index = open_index(index_dir, expected=embedder.identity)
    try:
        yield index
    finally:
        index.close()


@contextmanager
def _pipeline(index_dir: Path, embedder: Embedder, settings: Settings) -> Iterator[SearchPipeline]:
    pipeline = open_pipeline(
        settings.model_copy(update={"index_dir": index_dir}), embedder=embedder, reranker=None
    )
    try:
        yield pipeline
    finally:
        pipeline.lexical_index.close()  # type: ignore[attr-defined]
        pipeline.product_store.close()  # type: ignore[attr-defined]


def _counts(index: OpenedIndex) -> tuple[int, int, int]:
    return len(index.vector_store), len(index.lexical_index), len(index.product_store)


def _inodes(index_dir: Path) -> dict[str, int]:
    layout = IndexLayout(index_dir)
    return {
        "root": layout.root.stat().st_ino,
        "products": layout.products.stat().st_ino,
        "lexical": layout.lexical.stat().st_ino,
        "faiss": (layout.dense / INDEX_NAME).stat().st_ino,
    }


def _dense_manifest(index_dir: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads(
        (IndexLayout(index_dir).dense / "manifest.json").read_text(encoding="utf-8")
    )
    return manifest


def test_subset_catalog_file_reads_back_as_the_subset(
    subset_catalog_path: Path, catalog_subset: list[Product], built_index: dict[str, Any]
) -> None:
    loaded = load_products(subset_catalog_path)

    assert loaded == [p.model_copy(update={"attributes": {}}) for p in catalog_subset]
    assert built_index["count"] == len(catalog_subset)
    assert built_index["source"] == str(subset_catalog_path)


def test_build_writes_three_consistent_stores(
    index_dir: Path, catalog_subset: list[Product], tiny_embedder: Embedder
) -> None:
    manifest = read_index_manifest(index_dir)
    target = catalog_subset[len(catalog_subset) // 2]

    with _opened(index_dir, tiny_embedder) as index:
        counts = _counts(index)
        stored = index.product_store.get_many([target.id])[0]
        vector = tiny_embedder.embed([index.template.render(target)])[0]
        nearest = index.vector_store.search(vector, 1)

    n = len(catalog_subset)
    assert counts == (n, n, n)
    assert manifest["count"] == n
    assert manifest["dense_index"] == "IDMap2,Flat"
    assert manifest["embedder"] == {
        "model_id": tiny_embedder.identity.model_id,
        "weights_sha256": tiny_embedder.identity.weights_sha256,
        "dimension": tiny_embedder.dimension,
    }
    assert stored == target
    assert nearest[0].product_id == target.id
    assert nearest[0].score == pytest.approx(1.0, abs=1e-5)


def test_open_refuses_another_embedder(
    index_dir: Path, tiny_embedder: Embedder, other_tiny_embedder_dir: Path
) -> None:
    other = Embedder.load(other_tiny_embedder_dir, backend="torch")
    before = read_index_manifest(index_dir)

    with pytest.raises(StoreMismatchError, match="rebuild it with `shoprank index`") as caught:
        open_index(index_dir, expected=other.identity)
    with pytest.raises(StoreMismatchError):
        upsert_products(index_dir, [NEW_PRODUCT], embedder=other)

    message = str(caught.value)
    assert repr(tiny_embedder.identity.model_id) in message
    assert repr(other.identity.model_id) in message
    assert read_index_manifest(index_dir) == before


def test_upsert_replaces_and_adds_in_place(
    index_dir: Path,
    catalog_subset: list[Product],
    tiny_embedder: Embedder,
    integration_settings: Settings,
) -> None:
    target = catalog_subset[3]
    changed = target.model_copy(update={"title": CHANGED_TITLE})
    before_manifest = read_index_manifest(index_dir)
    before_dense = _dense_manifest(index_dir)
    before_inodes = _inodes(index_dir)

    upserted = upsert_products(index_dir, [changed, NEW_PRODUCT], embedder=tiny_embedder)

    assert upserted == 2
    manifest = read_index_manifest(index_dir)
    n = len(catalog_subset)
    assert manifest["count"] == n + 1
    assert manifest["built_at"] == before_manifest["built_at"]
    assert manifest["updated_at"] >= before_manifest["updated_at"]
    with _opened(index_dir, tiny_embedder) as index:
        assert _counts(index) == (n + 1, n + 1, n + 1)
        stored_changed, stored_new = index.product_store.get_many([target.id, NEW_PRODUCT.id])
        assert stored_changed is not None
        assert stored_changed.title == CHANGED_TITLE
        assert stored_new == NEW_PRODUCT
        lexical = index.lexical_index.search("narwhal tessellation", 5)
        assert [hit.product_id for hit in lexical] == [NEW_PRODUCT.id]
        vector = tiny_embedder.embed([index.template.render(changed)])[0]
        assert index.vector_store.search(vector, 1)[0].product_id == target.id
        by_brand = index.vector_store.search(
            vector, 10, SearchFilter(brands=("shoprank test brand",))
        )
        assert [hit.product_id for hit in by_brand] == [NEW_PRODUCT.id]
    with _pipeline(index_dir, tiny_embedder, integration_settings) as pipeline:
        outcome = pipeline.search("quokka zanzibar lantern", k=3, mode="lexical", rerank=False)
    assert outcome.results[0].product.id == target.id
    assert outcome.results[0].product.title == CHANGED_TITLE

    # In place, not a full rebuild: the directory and both SQLite files are the same files,
    # only the FAISS files were rewritten (saved atomically), and the index kind is kept.
    after_inodes = _inodes(index_dir)
    assert after_inodes["root"] == before_inodes["root"]
    assert after_inodes["products"] == before_inodes["products"]
    assert after_inodes["lexical"] == before_inodes["lexical"]
    assert after_inodes["faiss"] != before_inodes["faiss"]
    after_dense = _dense_manifest(index_dir)
    assert after_dense["index_kind"] == before_dense["index_kind"]
    assert after_dense["count"] == n + 1


def test_upsert_is_idempotent(
    index_dir: Path, catalog_subset: list[Product], tiny_embedder: Embedder
) -> None:
    upsert_products(index_dir, [NEW_PRODUCT], embedder=tiny_embedder)
    upsert_products(index_dir, [NEW_PRODUCT], embedder=tiny_embedder)

    n = len(catalog_subset)
    assert read_index_manifest(index_dir)["count"] == n + 1
    with _opened(index_dir, tiny_embedder) as index:
        assert _counts(index) == (n + 1, n + 1, n + 1)


def test_delete_removes_from_every_store(
    index_dir: Path,
    catalog_subset: list[Product],
    tiny_embedder: Embedder,
    integration_settings: Settings,
) -> None:
    target = catalog_subset[5]
    before_inodes = _inodes(index_dir)
    with _opened(index_dir, tiny_embedder) as index:
        title_hits = index.lexical_index.search(target.title, 20)
        assert target.id in {hit.product_id for hit in title_hits}

    removed = delete_products(index_dir, [target.id, "no-such-product"])
    removed_again = delete_products(index_dir, [target.id])

    assert removed == 1
    assert removed_again == 0
    n = len(catalog_subset)
    assert read_index_manifest(index_dir)["count"] == n - 1
    with _opened(index_dir, tiny_embedder) as index:
        assert _counts(index) == (n - 1, n - 1, n - 1)
        assert target.id not in index.vector_store
        assert index.product_store.get_many([target.id]) == [None]
        title_hits = index.lexical_index.search(target.title, n)
        assert target.id not in {hit.product_id for hit in title_hits}
        vector = tiny_embedder.embed([index.template.render(target)])[0]
        dense_hits = index.vector_store.search(vector, n)
        assert len(dense_hits) == n - 1
        assert target.id not in {hit.product_id for hit in dense_hits}
    with _pipeline(index_dir, tiny_embedder, integration_settings) as pipeline:
        outcome = pipeline.search(target.title, k=n, rerank=False)
    assert target.id not in {result.product.id for result in outcome.results}
    assert len(outcome.results) == n - 1
    scores = np.array([result.score for result in outcome.results])
    assert np.all(np.diff(scores) <= 0)
    after_inodes = _inodes(index_dir)
    assert after_inodes["products"] == before_inodes["products"]
    assert after_inodes["lexical"] == before_inodes["lexical"]
