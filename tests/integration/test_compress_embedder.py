"""Compress a tiny bi-encoder: ONNX export, int8, retrieval gate, registration, serving.

The tiny model has random weights, so these tests check the mechanics (every variant is
measured, the winner is registered derived from its source with the verdict in its manifest,
promotion makes it serve, and an index the source built opens with it), not quality.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from indexer.catalog import Product, TextTemplate
from indexer.jobs import open_index
from ranker.compress.embedder import (
    EmbedderReport,
    EmbedderVariant,
    apply_embedder_gate,
    compress_embedder,
    embedder_table,
)
from ranker.compress.records import write_json
from ranker.compress.register import apply_registration, register_embedder
from ranker.evaluation.judgments import Judgments
from ranker.loading import embedder_dir, load_embedder
from ranker.model_files import read_manifest
from ranker.registry import ModelVersion, Registry
from ranker.serving_models import open_registry
from ranker.settings import EmbedderSettings, RegistrySettings, Settings
from ranker.training.jobs import TrainingData

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(
    sample_judgments: Judgments, subset_qids: list[str], catalog_subset: list[Product]
) -> TrainingData:
    template = TextTemplate(Settings().index.text_template)
    texts = {product.id: template.render(product) for product in catalog_subset}
    return TrainingData(sample_judgments.subset(subset_qids), texts, "test")


@pytest.fixture(scope="module")
def compressed(
    tmp_path_factory: pytest.TempPathFactory, tiny_embedder_dir: Path, data: TrainingData
) -> tuple[Settings, EmbedderReport, ModelVersion]:
    """The tiny bi-encoder serving from the registry, compressed, its winner registered and
    promoted. Random weights retrieve at random: generous drops let the mechanics be tested."""
    home = tmp_path_factory.mktemp("compress-home")
    settings = Settings(home=home, registry=RegistrySettings(max_ndcg_drop=1.0))
    registry = open_registry(settings)
    source = registry.register("embedder", tiny_embedder_dir, job="test")
    registry.promote("embedder", source.version, actor="test")
    report = compress_embedder(
        settings, data, work_dir=home / "work", shorter_lengths=(16,), max_recall_drop=1.0
    )
    path = write_json(home / "work" / "embedder.json", report.as_dict())
    version = register_embedder(settings, report=path)
    apply_registration(report, settings, "embedder", version, promote=True)
    return settings, report, registry.get("embedder", str(version))


def test_every_variant_is_measured_and_the_winner_is_registered_and_serves(
    compressed: tuple[Settings, EmbedderReport, ModelVersion],
) -> None:
    settings, report, version = compressed
    names = [(v.name, v.max_length) for v in report.variants]
    assert names == [
        ("source torch fp32", 128),
        ("onnx fp32", 128),
        ("onnx int8", 128),
        ("onnx fp32, 16 word pieces", 16),
        ("onnx int8, 16 word pieces", 16),
    ]
    assert all(v.docs_per_s > 0 and v.recall_at_100 is not None for v in report.variants)
    assert report.variants[1].mean_cosine == pytest.approx(1.0, abs=1e-4)
    assert (report.variants[2].mean_cosine or 0.0) > 0.9
    assert report.variants[3].mean_cosine is None  # no torch run at 16 to compare with
    assert (report.variants[4].mean_cosine or 0.0) > 0.9  # against fp32 at 16
    assert report.source_version == "v2"  # v1: the seeded MiniLM
    assert report.registered == version.ref == "embedder/v3"
    assert report.promoted, report.promotion_note
    assert report.served_path == str(version.path)
    assert version.lineage["derived_from"] == "v2"
    chosen = report.chosen
    assert chosen is not None
    assert version.metrics["recall@100"] == chosen.recall_at_100
    assert version.metrics["ndcg@10"] == chosen.ndcg_at_10
    assert version.metrics["mean_cosine"] == chosen.mean_cosine
    gate = (read_manifest(version.path) or {})["gate"]
    assert gate["passed"] is True
    assert gate["variant"] == report.served
    assert not (settings.models_path / "embedder-compressed").exists()
    table = "\n".join(embedder_table(report))
    assert "(served)" in table
    assert "| onnx int8 | 128 |" in table
    assert "(registered embedder/v3, promoted)" in table


def test_serving_reads_at_the_length_the_gate_judged_unless_set(
    compressed: tuple[Settings, EmbedderReport, ModelVersion],
) -> None:
    settings, report, version = compressed
    served_row = report.chosen
    assert served_row is not None
    assert (read_manifest(version.path) or {})["serving"]["max_length"] == served_row.max_length

    assert load_embedder(settings).tokenizer.max_length == served_row.max_length
    pinned = settings.model_copy(
        update={"embedder": EmbedderSettings(model=settings.embedder.model, max_length=100)}
    )
    assert load_embedder(pinned).tokenizer.max_length == 100


def test_serving_picks_the_promoted_variant_and_its_source_when_told(
    compressed: tuple[Settings, EmbedderReport, ModelVersion], other_tiny_embedder_dir: Path
) -> None:
    settings, _, version = compressed
    source = Registry(settings.registry_path).get("embedder", "v2")
    assert embedder_dir(settings) == version.path
    assert load_embedder(settings).backend.name.startswith("onnx")
    off = settings.model_copy(
        update={"embedder": settings.embedder.model_copy(update={"compressed": False})}
    )
    assert embedder_dir(off) == source.path
    torch_only = settings.model_copy(
        update={"embedder": settings.embedder.model_copy(update={"backend": "torch"})}
    )
    assert embedder_dir(torch_only) == source.path
    other = settings.model_copy(
        update={
            "embedder": settings.embedder.model_copy(update={"model": str(other_tiny_embedder_dir)})
        }
    )
    assert embedder_dir(other) == other_tiny_embedder_dir


def test_a_candidate_that_is_not_promoted_does_not_serve(
    compressed: tuple[Settings, EmbedderReport, ModelVersion],
) -> None:
    settings, report, version = compressed
    again = EmbedderReport.from_dict(report.as_dict())
    path = write_json(settings.home / "work" / "embedder.json", again.as_dict())
    candidate = register_embedder(settings, report=path)
    apply_registration(again, settings, "embedder", candidate, promote=False)
    assert candidate is not None
    assert candidate != version.version
    assert not again.promoted
    assert embedder_dir(settings) == version.path


def test_an_index_built_by_the_source_opens_with_the_compressed_embedder(
    compressed: tuple[Settings, EmbedderReport, ModelVersion],
    built_index: dict[str, Any],
    integration_settings: Settings,
) -> None:
    settings, _, _ = compressed
    int8 = load_embedder(settings)
    index = open_index(integration_settings.index_path, expected=int8.identity)
    query = int8.embed(["stainless steel knife"])[0]
    assert len(index.vector_store.search(query, k=5)) == 5


def test_the_gate_keeps_variants_within_the_drop_and_serves_the_fastest() -> None:
    source = EmbedderVariant("source", "/s", docs_per_s=10, recall_at_100=0.80, ndcg_at_10=0.60)
    close = EmbedderVariant("close", "/a", docs_per_s=30, recall_at_100=0.795, ndcg_at_10=0.595)
    faster_lossy = EmbedderVariant("lossy", "/b", docs_per_s=60, recall_at_100=0.75, ndcg_at_10=0.6)
    refused = EmbedderVariant("refused", None, note="refused: parity")
    best = apply_embedder_gate([source, close, faster_lossy, refused], max_recall_drop=0.01)
    assert best is close
    assert [v.passes for v in (close, faster_lossy, refused)] == [True, False, False]
    assert apply_embedder_gate([source, faster_lossy], max_recall_drop=0.01) is None
