"""`shoprank compress` with the 0-layer shape on the tiny models and a catalog slice: the
prior-only student and its miss embedder are distilled, cross-validated, gated, registered,
promoted, and served over HTTP for texts the index does not hold.

Random weights rank at random, so this checks the mechanics (the registered directory, the
served scores equal to the prior computed by hand with the miss embedder's vectors), not
quality; a generous budget lets the student through both gates.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from indexer.catalog import Product, sample_judgments_path
from ranker.api.app import create_app
from ranker.api.service_loading import load_service
from ranker.compress.job import CompressConfig, compress_reranker
from ranker.embedder import Embedder
from ranker.lexical_features import lexical_features
from ranker.model_files import read_manifest
from ranker.prior import MISS_EMBEDDER_DIR
from ranker.registry import Registry
from ranker.reranker import Reranker
from ranker.serving_models import open_registry
from ranker.settings import RegistrySettings, Settings

pytestmark = pytest.mark.slow

CONFIG = CompressConfig(
    layers=(0,),
    max_lengths=(32,),
    embedder_max_lengths=(),
    folds=2,
    pseudo_queries=4,
    judged_query_depth=3,
    pseudo_query_depth=2,
    max_ndcg_drop=1.0,
    latency_repeats=2,
    miss_embedder={"layers": 1, "epochs": 1.0, "batch_size": 16, "max_length": 24},
)


@pytest.fixture
def shop_judgments(subset_qids: list[str], tmp_path: Path) -> Path:
    """The sample judgments of the subset's queries, as the shop's own file."""
    lines = sample_judgments_path().read_text(encoding="utf-8").splitlines()
    kept = [lines[0], *(line for line in lines[1:] if line.split(",", 1)[0] in subset_qids)]
    path = tmp_path / "shop-judgments.csv"
    path.write_text("\n".join(kept) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def registry_settings(
    integration_settings: Settings, tiny_reranker_dir: Path, tmp_path: Path
) -> Settings:
    """The tiny models, with the tiny reranker the registry's production teacher."""
    settings = integration_settings.model_copy(
        update={
            "registry_dir": tmp_path / "registry",
            "rerank": integration_settings.rerank.model_copy(update={"model": None}),
            "registry": RegistrySettings(max_ndcg_drop=1.0, max_rerank_p50_ms=1e6),
        }
    )
    registry = open_registry(settings)
    teacher = registry.register("reranker", tiny_reranker_dir, job="test")
    registry.promote("reranker", teacher.version, actor="test")
    return settings


@pytest.fixture
def compressed(
    registry_settings: Settings,
    built_index: dict[str, Any],
    subset_catalog_path: Path,
    shop_judgments: Path,
    tmp_path: Path,
) -> Any:
    return compress_reranker(
        registry_settings,
        CONFIG,
        work_dir=tmp_path / "work",
        judgments=shop_judgments,
        catalog=subset_catalog_path,
    )


@pytest.fixture
def client(registry_settings: Settings, compressed: Any) -> Iterator[TestClient]:
    with TestClient(create_app(registry_settings, loader=load_service)) as test_client:
        yield test_client


def test_the_0_layer_student_is_gated_registered_and_promoted(
    registry_settings: Settings, compressed: Any
) -> None:
    names = [v.name for v in compressed.variants[1:]]
    assert names == [
        "student 0L (prior only), miss embedder 1L/24t onnx int8",
        "student 0L (prior only), miss embedder 1L/24t onnx fp32",
        "student 0L (prior only), bi-encoder for misses",
    ]
    for variant in compressed.variants[1:]:
        assert variant.layers == 0
        assert variant.path is not None, variant.note
        assert variant.cv_ndcg is not None
        assert 0 <= variant.cv_ndcg <= 1
        assert variant.p50_ms > 0
    assert compressed.promoted, compressed.promotion_note
    registry = Registry(registry_settings.registry_path)
    version = registry.verify("reranker", registry.production_version("reranker") or "")
    assert version.lineage["recipe"]["layers"] == 0
    manifest = read_manifest(version.path) or {}
    assert manifest["cross_encoder"] is False
    chosen = compressed.chosen
    assert chosen is not None
    if "miss embedder" in chosen.name:
        assert (version.path / MISS_EMBEDDER_DIR / "model.onnx").is_file()
        assert any(name.startswith(f"{MISS_EMBEDDER_DIR}/") for name in version.manifest["files"])


def test_texts_the_index_does_not_hold_are_reranked_by_the_prior_over_http(
    client: TestClient,
    registry_settings: Settings,
    catalog_subset: list[Product],
    tiny_embedder: Embedder,
) -> None:
    registry = Registry(registry_settings.registry_path)
    version = registry.get("reranker", registry.production_version("reranker") or "")
    served = Reranker.load(version.path, embedder=tiny_embedder)
    assert not served.has_cross_encoder
    assert served.prior is not None
    query = "gym bag for women"
    documents = [
        f"{p.title} (new for {n} seasons)\n{p.brand}" for n, p in enumerate(catalog_subset[:8])
    ]

    response = client.post("/v1/rerank", json={"query": query, "documents": documents})

    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert len(results) == len(documents)
    got = np.array([r["relevance_score"] for r in sorted(results, key=lambda r: r["index"])])
    prior = served.prior
    encoder = prior.miss_embedder or prior.embedder
    expected_logits = (
        prior.weight * (encoder.embed(documents) @ tiny_embedder.embed([query])[0])
        + prior.bias
        + lexical_features(query, documents) @ np.array(prior.lexical_weights)
    )
    expected = 1 / (1 + np.exp(-expected_logits))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert "tokenize" not in response.headers.get("server-timing", "")
