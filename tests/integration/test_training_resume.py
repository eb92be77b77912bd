"""Training interrupted after a checkpoint and resumed ends where an uninterrupted run ends.

Both trainers, on tiny random models and a few sample queries: a run is stopped right after
its second checkpoint (as a killed worker would be), then started again with ``resume``; its
history and final weights must equal those of a run that was never stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from indexer.catalog import Product, TextTemplate
from ranker.errors import InputError
from ranker.evaluation.judgments import Judgments
from ranker.settings import Settings
from ranker.training.bi_encoder import BiEncoderConfig, train_bi_encoder
from ranker.training.checkpoints import CHECKPOINT_FILE, TrainingCheckpoints
from ranker.training.common import TrainingResult
from ranker.training.cross_encoder import CrossEncoderConfig, train_cross_encoder

pytestmark = pytest.mark.slow


class StoppedError(Exception):
    """Stands for a worker killed mid-run."""


@pytest.fixture(scope="module")
def texts(sample_products: list[Product]) -> dict[str, str]:
    template = TextTemplate(Settings().index.text_template)
    return {product.id: template.render(product) for product in sample_products}


@pytest.fixture(scope="module")
def judgments(sample_judgments: Judgments) -> Judgments:
    return sample_judgments.subset(list(sample_judgments.queries)[:6])


def stop_after_checkpoints(monkeypatch: pytest.MonkeyPatch, count: int) -> list[int]:
    """Make the ``count``-th checkpoint the last thing a run does; returns the saved steps."""
    saved_steps: list[int] = []
    save = TrainingCheckpoints.save

    def save_then_stop(self: TrainingCheckpoints, state: dict[str, Any]) -> None:
        save(self, state)
        saved_steps.append(int(state["step"]))
        if len(saved_steps) == count:
            raise StoppedError

    monkeypatch.setattr(TrainingCheckpoints, "save", save_then_stop)
    return saved_steps


def assert_same_run(resumed: TrainingResult, uninterrupted: TrainingResult) -> None:
    assert [row["step"] for row in resumed.history] == [
        row["step"] for row in uninterrupted.history
    ]
    for mine, theirs in zip(resumed.history, uninterrupted.history, strict=True):
        assert mine == pytest.approx(theirs, rel=1e-5, abs=1e-6)
    assert resumed.best_validation_ndcg == pytest.approx(uninterrupted.best_validation_ndcg)
    ours, theirs = resumed.model.state_dict(), uninterrupted.model.state_dict()
    assert ours.keys() == theirs.keys()
    for name in ours:
        torch.testing.assert_close(ours[name], theirs[name], rtol=1e-5, atol=1e-6)


def interrupted_then_resumed(
    train: Callable[..., TrainingResult],
    monkeypatch: pytest.MonkeyPatch,
    checkpoints: Path,
) -> tuple[TrainingResult, list[int]]:
    with monkeypatch.context() as patch:
        saved_steps = stop_after_checkpoints(patch, 2)
        with pytest.raises(StoppedError):
            train(checkpoints=checkpoints, resume=False)
    assert (checkpoints / CHECKPOINT_FILE).is_file()
    resumed = train(checkpoints=checkpoints, resume=True)
    assert not (checkpoints / CHECKPOINT_FILE).exists()  # cleared once the run finished
    return resumed, saved_steps


def test_a_resumed_cross_encoder_run_ends_like_an_uninterrupted_one(
    tiny_reranker_dir: Path,
    judgments: Judgments,
    texts: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = CrossEncoderConfig(
        base_model=str(tiny_reranker_dir),
        max_length=64,
        max_query_tokens=16,
        batch_size=16,
        epochs=3,
        learning_rate=3e-3,
        evals_per_epoch=2,
        patience=100,
        prior="none",
        checkpoint_every=3,
        save_dtype="float32",
    )

    def train(**options: Any) -> TrainingResult:
        return train_cross_encoder(judgments, texts, config, progress=False, **options)

    uninterrupted = train()
    resumed, saved_steps = interrupted_then_resumed(train, monkeypatch, tmp_path / "ckpt")
    steps_per_epoch = (uninterrupted.history[-1]["step"] + 2) // 3
    assert saved_steps == [3, 6]
    assert saved_steps[-1] % steps_per_epoch != 0  # stopped mid-epoch, not at its end
    assert_same_run(resumed, uninterrupted)


def test_a_resumed_bi_encoder_run_ends_like_an_uninterrupted_one(
    tiny_embedder_dir: Path,
    judgments: Judgments,
    texts: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = BiEncoderConfig(
        base_model=str(tiny_embedder_dir),
        max_length=64,
        batch_size=4,
        learning_rate=3e-3,
        evals_per_epoch=2,
        epochs=3,
        patience=100,
        checkpoint_every=2,
        save_dtype="float32",
    )

    def train(**options: Any) -> TrainingResult:
        return train_bi_encoder(judgments, texts, config, progress=False, **options)

    uninterrupted = train()
    resumed, saved_steps = interrupted_then_resumed(train, monkeypatch, tmp_path / "ckpt")
    assert saved_steps == [2, 4]
    assert_same_run(resumed, uninterrupted)


def test_a_checkpoint_of_another_recipe_is_refused(
    tiny_reranker_dir: Path,
    judgments: Judgments,
    texts: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = CrossEncoderConfig(
        base_model=str(tiny_reranker_dir),
        max_length=64,
        max_query_tokens=16,
        epochs=1,
        prior="none",
        checkpoint_every=1,
    )
    with monkeypatch.context() as patch:
        stop_after_checkpoints(patch, 1)
        with pytest.raises(StoppedError):
            train_cross_encoder(judgments, texts, config, progress=False, checkpoints=tmp_path)
    other = config.model_copy(update={"learning_rate": 1e-3})
    with pytest.raises(InputError, match="another training run"):
        train_cross_encoder(
            judgments, texts, other, progress=False, checkpoints=tmp_path, resume=True
        )
    # Without --resume the old checkpoint is simply overwritten by the new run.
    fresh = train_cross_encoder(
        judgments, texts, other, progress=False, checkpoints=tmp_path, max_steps=2
    )
    assert fresh.history[-1]["step"] == 2
