"""A reranker's prior and the bi-encoder beside it: promotion refuses a pair that cannot serve."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from ranker.model_switch import prior_blockers
from ranker.promotion import PromotionRefusedError, promote_gated
from ranker.registry import Registry
from ranker.settings import RegistrySettings


def _model(tmp_path: Path, name: str, weights: bytes, manifest: dict[str, object]) -> Path:
    source = tmp_path / name
    source.mkdir()
    (source / "config.json").write_text("{}")
    (source / "model.safetensors").write_bytes(weights)
    (source / "shoprank.json").write_text(json.dumps(manifest))
    return source


def _sha(weights: bytes) -> str:
    return hashlib.sha256(weights).hexdigest()


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    """The zero-shot bi-encoder and a reranker whose prior was trained with it, serving."""
    registry = Registry(tmp_path / "registry")
    embedder = registry.register("embedder", _model(tmp_path, "minilm", b"minilm", {}))
    registry.promote("embedder", embedder.version)
    prior = {"prior": {"weight": 1.0, "bias": 0.0, "embedder": {"weights_sha256": _sha(b"minilm")}}}
    reranker = registry.register("reranker", _model(tmp_path, "ce", b"ce", prior))
    registry.promote("reranker", reranker.version)
    return registry


def test_a_fine_tuned_bi_encoder_is_blocked_by_the_serving_rerankers_prior(
    registry: Registry, tmp_path: Path
) -> None:
    tuned = registry.register("embedder", _model(tmp_path, "tuned", b"tuned", {}))

    (reason,) = prior_blockers(registry, tuned)

    assert "reranker/v1's prior was trained with the bi-encoder" in reason
    with pytest.raises(PromotionRefusedError, match="train a reranker on the bi-encoder"):
        promote_gated(registry, "embedder", tuned.version, RegistrySettings(), blockers=[reason])
    assert registry.production_version("embedder") == "v1"


def test_an_export_of_the_same_bi_encoder_is_not_blocked(
    registry: Registry, tmp_path: Path
) -> None:
    export = _model(tmp_path, "int8", b"int8", {"derived_from": [_sha(b"minilm")]})
    assert prior_blockers(registry, registry.register("embedder", export)) == []


def test_a_reranker_trained_on_another_bi_encoder_is_blocked(
    registry: Registry, tmp_path: Path
) -> None:
    prior = {"prior": {"weight": 1.0, "bias": 0.0, "embedder": {"weights_sha256": _sha(b"x")}}}
    other = registry.register("reranker", _model(tmp_path, "ce-x", b"ce-x", prior))
    without_prior = registry.register("reranker", _model(tmp_path, "ce-plain", b"plain", {}))

    assert len(prior_blockers(registry, other)) == 1
    assert prior_blockers(registry, without_prior) == []
