"""Training's prior reads the cosines' product vectors from the shop's index, as serving
does, and embeds only what the index lacks or cannot vouch for."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from indexer.catalog import TextTemplate, load_products
from ranker.embedder import Embedder
from ranker.evaluation.judgments import Judgments
from ranker.loading import indexed_vectors
from ranker.settings import Settings
from ranker.training.reranker_pairs import dense_priors


class _CountingEmbedder:
    """Wraps an embedder and records every batch it embeds."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self.dimension = embedder.dimension
        self.batches: list[list[str]] = []

    def embed(self, texts: Sequence[str], **kwargs: Any) -> np.ndarray:
        self.batches.append(list(texts))
        return self.embedder.embed(texts, **kwargs)


def _shop(settings: Settings, catalog: Path) -> tuple[Judgments, dict[str, str]]:
    """Two queries judging indexed products, and one product the index does not hold."""
    template = TextTemplate(settings.index.text_template)
    texts = {p.id: template.render(p) for p in load_products(catalog)}
    ids = sorted(texts)[:6]
    texts["not-indexed"] = "A product the index has never seen"
    qrels = {"q1": {ids[0]: 1.0, ids[1]: 0.0, ids[2]: 0.5}, "q2": {ids[3]: 1.0, "not-indexed": 0.0}}
    labels = {qid: {pid: str(g) for pid, g in judged.items()} for qid, judged in qrels.items()}
    judgments = Judgments({"q1": "kitchen knife", "q2": "coffee mug"}, qrels, labels)
    return judgments, texts


def test_indexed_products_are_read_not_embedded(
    integration_settings: Settings,
    built_index: dict[str, Any],
    subset_catalog_path: Path,
    tiny_embedder: Embedder,
) -> None:
    judgments, texts = _shop(integration_settings, subset_catalog_path)
    stored = indexed_vectors(integration_settings, tiny_embedder)
    assert stored is not None
    assert len(stored) == built_index["count"]
    counting = _CountingEmbedder(tiny_embedder)

    read = dense_priors(counting, judgments, texts, {"q1": [sorted(texts)[4]]}, stored=stored)
    embedded = dense_priors(tiny_embedder, judgments, texts, {"q1": [sorted(texts)[4]]})

    assert read.keys() == embedded.keys()
    for pair, cosine in embedded.items():
        assert read[pair] == pytest.approx(cosine, abs=1e-5)
    product_batches = [batch for batch in counting.batches if "kitchen knife" not in batch]
    assert product_batches == [[texts["not-indexed"]]]


def test_no_index_or_another_models_index_means_embedding(
    integration_settings: Settings,
    built_index: dict[str, Any],
    tiny_embedder: Embedder,
    other_tiny_embedder_dir: Path,
    tmp_path: Path,
) -> None:
    empty = integration_settings.model_copy(update={"index_dir": tmp_path / "no-index"})
    other = Embedder.load(other_tiny_embedder_dir, backend="torch")
    opensearch = integration_settings.model_copy(
        update={"index": integration_settings.index.model_copy(update={"backend": "opensearch"})}
    )

    assert indexed_vectors(empty, tiny_embedder) is None
    assert indexed_vectors(integration_settings, other) is None
    assert indexed_vectors(opensearch, tiny_embedder) is None
