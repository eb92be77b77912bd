"""Compress a tiny bi-encoder: ONNX export, int8, retrieval gate, install, serve.

The tiny model has random weights, so these tests check the mechanics (every variant is
measured, the winner is installed with its verdict, serving picks it only when it was made
from the configured model, and an index the source built opens with it), not quality.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from indexer.catalog import Product, TextTemplate
from indexer.jobs import open_index
from ranker.compress.embedder import (
    EmbedderVariant,
    apply_embedder_gate,
    compress_embedder,
    embedder_table,
)
from ranker.evaluation.judgments import Judgments
from ranker.loading import COMPRESSED_EMBEDDER_DIR, embedder_dir, load_embedder
from ranker.model_files import MANIFEST_NAME, read_manifest
from ranker.settings import EmbedderSettings, Settings
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
) -> tuple[Settings, Any]:
    home = tmp_path_factory.mktemp("compress-home")
    settings = Settings(home=home, embedder=EmbedderSettings(model=str(tiny_embedder_dir)))
    # Random weights retrieve at random: a generous drop lets the mechanics be tested.
    report = compress_embedder(
        settings, data, work_dir=home / "work", shorter_lengths=(16,), max_recall_drop=1.0
    )
    return settings, report


def test_every_variant_is_measured_and_the_int8_one_serves(
    compressed: tuple[Settings, Any],
) -> None:
    settings, report = compressed
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
    assert report.variants[2].mean_cosine > 0.9
    assert report.variants[3].mean_cosine is None  # no torch run at 16 to compare with
    assert report.variants[4].mean_cosine > 0.9  # against fp32 at 16
    served = settings.models_path / COMPRESSED_EMBEDDER_DIR
    assert report.served_path == str(served)
    gate = (read_manifest(served) or {})["gate"]
    assert gate["passed"] is True
    assert gate["variant"] == report.served
    table = "\n".join(embedder_table(report))
    assert "(served)" in table
    assert "| onnx int8 | 128 |" in table


def test_serving_reads_at_the_length_the_gate_judged_unless_set(
    compressed: tuple[Settings, Any],
) -> None:
    settings, report = compressed
    served_row = next(v for v in report.variants if v.name == report.served)
    served = settings.models_path / COMPRESSED_EMBEDDER_DIR
    assert (read_manifest(served) or {})["serving"]["max_length"] == served_row.max_length

    assert load_embedder(settings).tokenizer.max_length == served_row.max_length
    pinned = settings.model_copy(
        update={"embedder": EmbedderSettings(model=settings.embedder.model, max_length=100)}
    )
    assert load_embedder(pinned).tokenizer.max_length == 100


def test_serving_picks_the_gated_variant_of_the_configured_model(
    compressed: tuple[Settings, Any], other_tiny_embedder_dir: Path
) -> None:
    settings, _ = compressed
    served = settings.models_path / COMPRESSED_EMBEDDER_DIR
    assert embedder_dir(settings) == served
    assert load_embedder(settings).backend.name.startswith("onnx")
    off = settings.model_copy(
        update={"embedder": settings.embedder.model_copy(update={"compressed": False})}
    )
    assert embedder_dir(off) != served
    torch_only = settings.model_copy(
        update={"embedder": settings.embedder.model_copy(update={"backend": "torch"})}
    )
    assert embedder_dir(torch_only) != served
    other = settings.model_copy(
        update={
            "embedder": settings.embedder.model_copy(update={"model": str(other_tiny_embedder_dir)})
        }
    )
    assert embedder_dir(other) == other_tiny_embedder_dir


def test_a_variant_without_a_passed_gate_is_not_served(
    compressed: tuple[Settings, Any], tmp_path: Path
) -> None:
    settings, _ = compressed
    elsewhere = Settings(home=tmp_path, embedder=settings.embedder)
    target = elsewhere.models_path / COMPRESSED_EMBEDDER_DIR
    shutil.copytree(settings.models_path / COMPRESSED_EMBEDDER_DIR, target)
    manifest = read_manifest(target) or {}
    assert embedder_dir(elsewhere) == target
    (target / MANIFEST_NAME).write_text(json.dumps({**manifest, "gate": {"passed": False}}))
    assert embedder_dir(elsewhere) == Path(settings.embedder.model)


def test_an_index_built_by_the_source_opens_with_the_compressed_embedder(
    compressed: tuple[Settings, Any], built_index: dict[str, Any], integration_settings: Settings
) -> None:
    settings, _ = compressed
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
