"""Hot reload with a fake loader: swap on promotion, refusals, fallbacks, embedder rules."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import pytest
from api_fakes import FakeLoader, FakeReranker, fake_model_dir
from fastapi.testclient import TestClient

from indexer.catalog import TextTemplate
from ranker.api.app import create_app
from ranker.api.model_loading import load_models
from ranker.api.reload import ModelWatcher
from ranker.api.service import Service
from ranker.registry import Registry
from ranker.settings import RerankSettings, RetrievalSettings, Settings

RERANK = {"query": "usb cable", "documents": ["usb c cable", "garden hose"]}


def _service(settings: Settings, loader: FakeLoader) -> Service:
    models = load_models(settings, loader)
    return Service(
        embedder=models.embedder,
        reranker=models.reranker,
        pipeline=None,
        problems=[],
        embedder_source=models.embedder_source,
        reranker_source=models.reranker_source,
        model_problems=dict(models.problems),
    )


def _corrupt(registry: Registry, role: str, version: str) -> None:
    """Overwrite the weights with as many other bytes (same size, other hash)."""
    weights = registry.get(role, version).path / "model.safetensors"
    weights.write_bytes(b"x" * weights.stat().st_size)


class SafetensorError(Exception):
    """Stands in for safetensors' own error (its module is what names the file)."""


SafetensorError.__module__ = "safetensors_rust"


@pytest.fixture
def loader() -> FakeLoader:
    return FakeLoader()


@pytest.fixture
def service(registry: Registry, registry_settings: Settings, loader: FakeLoader) -> Service:
    return _service(registry_settings, loader)


@pytest.fixture
def watcher(service: Service, registry_settings: Settings, loader: FakeLoader) -> ModelWatcher:
    found = ModelWatcher(service, registry_settings, loader=loader, interval_s=0)
    found.check()
    return found


def _serving(service: Service) -> str | None:
    return service.snapshot.reranker_label


def test_a_promotion_swaps_one_snapshot_and_old_requests_keep_theirs(
    registry: Registry, service: Service, watcher: ModelWatcher
) -> None:
    in_flight = service.snapshot

    registry.promote("reranker", "v2")
    swapped = watcher.check()

    assert swapped == ["reranker"]
    assert _serving(service) == "reranker/v2"
    assert service.snapshot.reranker.logit == 2.0  # type: ignore[union-attr]
    assert in_flight.reranker_label == "reranker/v1"
    assert in_flight.reranker.logit == 1.0  # type: ignore[union-attr]
    assert service.snapshot.reranker.backend.warmups == 1  # type: ignore[union-attr]
    assert watcher.check() == []
    assert service.status != "degraded" or not service.model_problems


def test_a_version_that_fails_to_load_is_refused_and_the_old_one_serves(
    registry: Registry, service: Service, watcher: ModelWatcher, loader: FakeLoader
) -> None:
    loader.fail["reranker/v2"] = SafetensorError("header too large")

    registry.promote("reranker", "v2")
    assert watcher.check() == []

    assert _serving(service) == "reranker/v1"
    problem = service.model_problems["reranker"]
    assert problem.startswith("reranker/v2: file model.safetensors cannot be loaded")
    assert "still serving reranker/v1" in problem
    loads = len(loader.loaded)
    assert watcher.check() == []  # a refused version is not retried until something changes
    assert len(loader.loaded) == loads


def test_corrupt_serving_files_fall_back_to_the_previous_version_and_rollback_clears_it(
    registry: Registry, service: Service, watcher: ModelWatcher
) -> None:
    registry.promote("reranker", "v2")
    watcher.check()

    _corrupt(registry, "reranker", "v2")
    watcher.check()

    assert _serving(service) == "reranker/v1"
    problem = service.model_problems["reranker"]
    assert "reranker/v2: file model.safetensors does not match its manifest hash" in problem
    assert "serving reranker/v1 instead" in problem

    registry.rollback("reranker")
    watcher.check()

    assert _serving(service) == "reranker/v1"
    assert service.model_problems == {}


def test_healthz_is_degraded_with_the_reason_while_the_old_version_answers(
    registry: Registry, service: Service, registry_settings: Settings, loader: FakeLoader
) -> None:
    loader.fail["reranker/v2"] = SafetensorError("truncated")
    app = create_app(registry_settings, service=service, reload=True, model_loader=loader)
    with TestClient(app) as client:
        registry.promote("reranker", "v2")
        app.state.watcher.wake()
        deadline = time.monotonic() + 10
        while "reranker" not in service.model_problems and time.monotonic() < deadline:
            time.sleep(0.05)
        health = client.get("/healthz").json()
        rerank = client.post("/v1/rerank", json=RERANK)

    assert health["status"] == "degraded"
    assert "reranker/v2: file model.safetensors cannot be loaded" in health["detail"]
    assert health["versions"]["reranker"] == "reranker/v1"
    assert rerank.status_code == 200
    assert rerank.headers["x-model-version"] == "reranker/v1"


def test_a_corrupt_production_at_start_up_serves_the_previous_good_version(
    registry: Registry, registry_settings: Settings, loader: FakeLoader
) -> None:
    registry.promote("reranker", "v2")
    _corrupt(registry, "reranker", "v2")

    service = _service(registry_settings, loader)

    assert _serving(service) == "reranker/v1"
    assert (
        "reranker/v2: file model.safetensors does not match" in service.model_problems["reranker"]
    )


def test_with_no_good_version_at_start_up_the_rerank_routes_answer_503(
    registry: Registry, registry_settings: Settings, loader: FakeLoader
) -> None:
    _corrupt(registry, "reranker", "v1")

    service = _service(registry_settings, loader)
    with TestClient(create_app(registry_settings, service=service)) as client:
        rerank = client.post("/v1/rerank", json=RERANK)
        health = client.get("/healthz")

    assert service.reranker is None
    assert rerank.status_code == 503
    assert rerank.json()["error_type"] == "unhealthy"
    assert "reranker/v1: file model.safetensors" in rerank.json()["error"]
    assert health.status_code == 503
    assert health.json()["status"] == "degraded"
    assert "reranker/v1: file model.safetensors" in health.json()["detail"]


def test_the_watcher_thread_checks_when_woken(
    registry: Registry, service: Service, registry_settings: Settings, loader: FakeLoader
) -> None:
    watcher = ModelWatcher(service, registry_settings, loader=loader, interval_s=0)
    assert watcher.start()
    try:
        registry.promote("reranker", "v2")
        watcher.wake()
        deadline = time.monotonic() + 10
        while _serving(service) != "reranker/v2" and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        watcher.stop()

    assert _serving(service) == "reranker/v2"


# ----------------------------------------------------------------------------- embedders


class FakeStore:
    def __init__(self, identity: Any) -> None:
        self.identity = identity


class FakePipeline:
    """Just what rewiring reads; searching is not exercised here."""

    def __init__(self, embedder: Any, reranker: Any) -> None:
        self.embedder = embedder
        self.reranker = reranker
        self.vector_store = FakeStore(embedder.identity)
        self.lexical_index = self.product_store = object()
        self.template = TextTemplate("{title}")
        self.retrieval = RetrievalSettings()
        self.rerank_settings = RerankSettings()
        self.speller = object()

    def with_reranker(self, reranker: Any) -> FakePipeline:
        copy = FakePipeline(self.embedder, reranker)
        copy.vector_store = self.vector_store
        return copy


def _register_embedder(registry: Registry, tmp_path: Path, marker: str, lineage: list[str]) -> str:
    source = fake_model_dir(tmp_path / f"src-{marker}", marker=marker)
    (source / "config.json").write_text(json.dumps({"marker": marker, "lineage": lineage}))
    return registry.register("embedder", source).version


@pytest.fixture
def indexed(service: Service) -> Service:
    """The service with a (fake) index built by its embedder."""
    embedder, reranker = service.embedder, service.reranker
    service.swap(lambda s: dataclasses.replace(s, pipeline=FakePipeline(embedder, reranker)))  # type: ignore[arg-type]
    return service


def test_an_embedder_the_index_cannot_search_needs_a_reindex(
    registry: Registry, indexed: Service, watcher: ModelWatcher, tmp_path: Path
) -> None:
    version = _register_embedder(registry, tmp_path, "e2", [])
    registry.promote("embedder", version)

    watcher.check()

    assert indexed.snapshot.embedder_label == "embedder/v1"
    assert indexed.model_problems["embedder"].startswith("embedder/v2 needs a reindex")
    assert indexed.snapshot.pipeline.embedder is indexed.snapshot.embedder  # type: ignore[union-attr]


def test_an_export_of_the_same_embedder_is_swapped_with_its_pipeline(
    registry: Registry, indexed: Service, watcher: ModelWatcher, tmp_path: Path
) -> None:
    version = _register_embedder(registry, tmp_path, "e1-int8", ["e1"])
    registry.promote("embedder", version)

    assert watcher.check() == ["embedder"]

    snapshot = indexed.snapshot
    assert snapshot.embedder_label == "embedder/v2"
    assert snapshot.pipeline is not None
    assert snapshot.pipeline.embedder is snapshot.embedder
    assert snapshot.pipeline.reranker is snapshot.reranker
    assert snapshot.pipeline.speller is not None  # the index's vocabulary goes with it
    assert indexed.model_problems == {}


def test_a_reranker_with_a_dense_prior_is_reloaded_with_the_new_embedder(
    registry: Registry, indexed: Service, watcher: ModelWatcher, tmp_path: Path
) -> None:
    prior = FakeReranker("with-prior", 1.0, prior=object())
    indexed.swap(lambda s: dataclasses.replace(s, reranker=prior))  # type: ignore[arg-type]
    version = _register_embedder(registry, tmp_path, "e1-int8", ["e1"])
    registry.promote("embedder", version)

    watcher.check()

    snapshot = indexed.snapshot
    assert snapshot.reranker.embedder is snapshot.embedder  # type: ignore[union-attr]
    assert snapshot.reranker_label == "reranker/v1"


def test_a_swapped_in_reranker_brings_its_own_cost_model(
    registry: Registry, service: Service, watcher: ModelWatcher
) -> None:
    assert service.snapshot.reranker_cost is None  # built by hand: nothing measured

    registry.promote("reranker", "v2")
    watcher.check()

    cost = service.snapshot.reranker_cost
    assert _serving(service) == "reranker/v2"
    assert cost is not None
    assert cost.samples >= 6
    assert min(cost.fixed_ms, cost.per_pair_ms, cost.per_token_ms) >= 0
