"""Fine-tune a tiny bi-encoder for a few steps, save it, and serve it as the Embedder."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from indexer.catalog import Product, TextTemplate
from ranker.embedder import Embedder
from ranker.evaluation.judgments import Judgments
from ranker.model_files import MANIFEST_NAME
from ranker.settings import Settings
from ranker.training.bi_encoder import (
    BiEncoderConfig,
    mine_triples,
    save_bi_encoder,
    train_bi_encoder,
    with_teacher_margins,
)
from ranker.training.common import TrainingResult

pytestmark = pytest.mark.slow

STEPS = 30


@pytest.fixture(scope="module")
def texts(sample_products: list[Product]) -> dict[str, str]:
    template = TextTemplate(Settings().index.text_template)
    return {product.id: template.render(product) for product in sample_products}


@pytest.fixture(scope="module")
def judgments(sample_judgments: Judgments) -> Judgments:
    return sample_judgments.subset(list(sample_judgments.queries)[:8])


@pytest.fixture(scope="module")
def one_step(
    tiny_embedder_dir: Path, judgments: Judgments, texts: dict[str, str]
) -> TrainingResult:
    """The tiny bi-encoder after one training step: a model to mine triples with."""
    config = BiEncoderConfig(base_model=str(tiny_embedder_dir), max_length=64)
    return train_bi_encoder(judgments, texts, config, max_steps=1, progress=False)


def test_hard_negatives_are_judged_irrelevant_and_positives_exact(
    one_step: TrainingResult, judgments: Judgments, texts: dict[str, str]
) -> None:
    trained = one_step
    text_label = {
        (qid, texts[pid]): label
        for qid, labels in judgments.labels.items()
        for pid, label in labels.items()
    }
    triples = mine_triples(
        trained.model,
        trained.tokenizer,
        judgments,
        list(judgments.queries),
        texts,
        depth=5,
        seed=0,
    )

    assert triples
    assert all(text_label[(t.qid, t.positive)] == "E" for t in triples)
    assert all(text_label[(t.qid, t.negative)] == "I" for t in triples)


def test_positive_gain_makes_every_product_at_or_above_it_a_positive(
    one_step: TrainingResult, judgments: Judgments, texts: dict[str, str]
) -> None:
    trained = one_step
    gains = {
        (qid, texts[pid]): gain
        for qid, qrels in judgments.qrels.items()
        for pid, gain in qrels.items()
    }

    def mined(positive_gain: float | None) -> list[Any]:
        return mine_triples(
            trained.model,
            trained.tokenizer,
            judgments,
            list(judgments.queries),
            texts,
            depth=5,
            seed=0,
            positive_gain=positive_gain,
        )

    top_only, graded = mined(None), mined(0.1)
    expected_graded = sum(
        1
        for qid, qrels in judgments.qrels.items()
        if any(gain == 0 for gain in qrels.values())
        for gain in qrels.values()
        if gain >= 0.1
    )

    assert {gains[(t.qid, t.positive)] for t in graded} == {0.1, 1.0}
    assert {gains[(t.qid, t.positive)] for t in top_only} == {1.0}
    assert len(graded) == expected_graded > len(top_only)


def test_triples_from_one_query_fail_clearly_instead_of_spinning(
    tiny_embedder_dir: Path, judgments: Judgments, texts: dict[str, str]
) -> None:
    """In-batch negatives need two queries in a batch: with one training query there is no
    batch, and training used to loop for ever waiting for one."""
    config = BiEncoderConfig(base_model=str(tiny_embedder_dir), max_length=64)
    # Two queries with both a positive (E) and a hard negative (I): one trains, one validates.
    qids = [q for q, labels in judgments.labels.items() if {"E", "I"} <= set(labels.values())]
    assert len(qids) >= 2
    qids = qids[:2]

    with pytest.raises(ValueError, match="all come from one query"):
        train_bi_encoder(judgments, texts, config, train_qids=qids, progress=False)


def test_training_lowers_the_loss_and_the_saved_model_embeds_the_same(
    tiny_embedder_dir: Path, judgments: Judgments, texts: dict[str, str], tmp_path: Path
) -> None:
    config = BiEncoderConfig(
        base_model=str(tiny_embedder_dir),
        max_length=64,
        batch_size=8,
        learning_rate=3e-3,  # a random 2-layer model needs far more than MiniLM's 2e-5
        evals_per_epoch=1000,  # an evaluation (and a mean loss) every step
        epochs=100.0,
        patience=STEPS,
        save_dtype="float32",
    )
    trained = train_bi_encoder(judgments, texts, config, max_steps=STEPS, progress=False)
    losses = [row["train_loss"] for row in trained.history if "train_loss" in row]
    out = save_bi_encoder(trained, tmp_path / "embedder", config=config, data_sha256="x" * 64)
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    served = Embedder.load(out, backend="torch", max_length=64)
    sample = [texts[pid] for pid in list(texts)[:5]]
    trained.model.eval()

    assert len(losses) == STEPS
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    assert manifest["kind"] == "bi-encoder"
    assert manifest["data_sha256"] == "x" * 64
    assert manifest["model_id"].startswith("shoprank-bi-encoder-")
    assert served.identity.model_id == manifest["model_id"]
    from ranker.training.bi_encoder import _encode

    expected = _encode(trained.model, trained.tokenizer, sample)
    np.testing.assert_allclose(served.embed(sample), expected, atol=1e-5)


def test_teacher_margins_are_positive_minus_negative_scored_once_per_query(
    tiny_embedder_dir: Path, judgments: Judgments, texts: dict[str, str]
) -> None:
    config = BiEncoderConfig(base_model=str(tiny_embedder_dir), max_length=64)
    trained = train_bi_encoder(judgments, texts, config, max_steps=1, progress=False)
    triples = mine_triples(
        trained.model, trained.tokenizer, judgments, list(judgments.queries), texts, depth=5, seed=0
    )
    calls: list[str] = []

    def teacher(query: str, documents: Sequence[str]) -> np.ndarray:
        calls.append(query)
        return np.array([float(len(document)) for document in documents])

    margined = with_teacher_margins(triples, teacher)

    assert [t.teacher_margin for t in margined] == [
        float(len(t.positive) - len(t.negative)) for t in triples
    ]
    assert sorted(calls) == sorted({t.query for t in triples})


def test_margin_mse_fits_the_teachers_margins(
    tiny_embedder_dir: Path, judgments: Judgments, texts: dict[str, str]
) -> None:
    def teacher(query: str, documents: Sequence[str]) -> np.ndarray:
        # A teacher that prefers shorter texts: a margin the tiny model can learn to match.
        return np.array([-len(document) / 200.0 for document in documents])

    config = BiEncoderConfig(
        base_model=str(tiny_embedder_dir),
        max_length=64,
        batch_size=8,
        learning_rate=3e-3,
        evals_per_epoch=1000,
        epochs=100.0,
        patience=STEPS,
        loss="margin-mse",
    )
    trained = train_bi_encoder(
        judgments, texts, config, max_steps=STEPS, progress=False, teacher=teacher
    )
    losses = [row["train_loss"] for row in trained.history if "train_loss" in row]

    assert len(losses) == STEPS
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    with pytest.raises(ValueError, match="needs a teacher"):
        train_bi_encoder(judgments, texts, config, max_steps=1, progress=False)


def test_retrieved_unjudged_products_join_the_hard_negative_pool(
    tiny_embedder_dir: Path, judgments: Judgments, texts: dict[str, str]
) -> None:
    config = BiEncoderConfig(base_model=str(tiny_embedder_dir), max_length=64)
    trained = train_bi_encoder(judgments, texts, config, max_steps=1, progress=False)
    judged = {pid for labels in judgments.labels.values() for pid in labels}
    outsiders = sorted(pid for pid in texts if pid not in judged)[:3]
    # Queries with a positive but no judged-irrelevant product: only unjudged ones can serve.
    without_negative = [
        qid
        for qid, labels in judgments.labels.items()
        if "E" in labels.values() and "I" not in labels.values()
    ]
    qids = list(judgments.queries)
    unjudged = {qid: outsiders for qid in qids}

    def mine(pools: dict[str, list[str]] | None) -> list[Any]:
        return mine_triples(
            trained.model,
            trained.tokenizer,
            judgments,
            qids,
            texts,
            depth=100,  # every candidate is in the pool: the draw shows what the pool holds
            seed=0,
            unjudged=pools,
        )

    plain, widened = mine(None), mine(unjudged)
    outsider_texts = {texts[pid] for pid in outsiders}
    assert not any(t.negative in outsider_texts for t in plain)
    assert any(t.negative in outsider_texts for t in widened)
    assert {t.qid for t in widened} >= {t.qid for t in plain} | set(without_negative)
