"""A new bi-encoder on OpenSearch: its index is staged off the alias, promotion swaps both."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from indexer.stores.base import StoreMismatchError
from indexer.stores.opensearch.aliases import STAGED_FOR, alias_targets, versioned_indexes
from indexer.stores.opensearch.client import make_client
from indexer.stores.opensearch.store import OpenSearchVectorStore
from ranker.indexing import IndexRequest, run_index_job
from ranker.loading import load_embedder, open_pipeline
from ranker.model_switch import promote
from ranker.opensearch_switch import stage_opensearch_index
from ranker.promotion import PromotionRefusedError
from ranker.registry import Registry, RegistryError
from ranker.settings import EmbedderSettings, IndexSettings, RegistrySettings, Settings

pytestmark = [pytest.mark.opensearch, pytest.mark.integration]


def test_a_staged_index_serves_with_its_bi_encoder(
    make_config: Any,
    tmp_path: Path,
    tiny_embedder_dir: Path,
    other_tiny_embedder_dir: Path,
    subset_catalog_path: Path,
) -> None:
    settings = Settings(
        home=tmp_path,
        index=IndexSettings(backend="opensearch"),
        opensearch=make_config("it-switch"),
        embedder=EmbedderSettings(backend="torch", batch_size=32),
        registry=RegistrySettings(max_ndcg_drop=1.0),
    )
    alias = settings.opensearch.index_alias
    client = make_client(settings.opensearch)
    registry = Registry(settings.registry_path)
    registry.promote("embedder", registry.register("embedder", tiny_embedder_dir).version)
    run_index_job(settings, IndexRequest(catalog=subset_catalog_path), progress=False)
    (serving,) = alias_targets(client, alias)
    old_embedder = load_embedder(settings)
    before = open_pipeline(settings, embedder=old_embedder, reranker=None)  # the API's

    candidate = registry.register("embedder", other_tiny_embedder_dir).version
    with pytest.raises(RegistryError, match="--for-embedder"):
        promote(settings, "embedder", candidate, actor="test", force=True)

    staged = stage_opensearch_index(
        settings, candidate, catalog=subset_catalog_path, progress=False
    ).index
    assert alias_targets(client, alias) == [serving]
    assert versioned_indexes(client, alias)[staged][STAGED_FOR] == candidate

    with pytest.raises(PromotionRefusedError):  # no NDCG@10 measured: the gate refuses
        promote(settings, "embedder", candidate, actor="test")
    assert alias_targets(client, alias) == [serving]
    assert registry.production_version("embedder") == "v1"

    promote(settings, "embedder", candidate, actor="test", force=True)
    assert registry.production_version("embedder") == candidate
    assert alias_targets(client, alias) == [staged]
    metas = versioned_indexes(client, alias)
    assert STAGED_FOR not in metas[staged]
    assert "retired_at" in metas[serving]

    new_embedder = load_embedder(settings)
    after = open_pipeline(settings, embedder=new_embedder, reranker=None)
    assert after.search("usb charger cable", k=5, mode="dense", rerank=False).results
    with pytest.raises(StoreMismatchError):
        open_pipeline(settings, embedder=old_embedder, reranker=None)
    # Until it reopens, the API's store searches its old index with the old bi-encoder.
    assert before.search("usb charger cable", k=5, mode="dense", rerank=False).results
    store = before.vector_store
    assert isinstance(store, OpenSearchVectorStore)
    assert store.index.pin.pinned == serving
