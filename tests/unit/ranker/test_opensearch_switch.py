"""Promoting a bi-encoder on OpenSearch moves the alias back to back with the pointer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from opensearch_fakes import FakeCluster

from indexer.stores.base import ModelIdentity
from indexer.stores.opensearch.aliases import STAGED_FOR
from ranker import model_switch, opensearch_switch
from ranker.model_switch import promote
from ranker.promotion import PromotionRefusedError
from ranker.registry import Registry, RegistryError
from ranker.settings import IndexSettings, OpenSearchSettings, RegistrySettings, Settings

ALIAS = "products"
SERVING = f"{ALIAS}-v1"
STAGED = f"{ALIAS}-v2"


def _model(directory: Path, marker: str) -> Path:
    directory.mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps({"hidden_size": 8, "marker": marker}))
    (directory / "model.safetensors").write_bytes(marker.encode() * 64)
    return directory


@pytest.fixture
def settings(
    tmp_path: Path, fake_cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    settings = Settings(
        home=tmp_path,
        index=IndexSettings(backend="opensearch"),
        opensearch=OpenSearchSettings(index_alias=ALIAS),
        registry=RegistrySettings(max_ndcg_drop=1.0),
    )
    registry = Registry(settings.registry_path)
    served = registry.register("embedder", _model(tmp_path / "m1", "one"))
    registry.promote("embedder", served.version)
    registry.register("embedder", _model(tmp_path / "m2", "two"))
    fake_cluster.add_index(SERVING, _identity(settings, "v1"), alias=ALIAS)
    monkeypatch.setattr(opensearch_switch, "make_client", lambda _: fake_cluster)
    return settings


def _identity(settings: Settings, version: str) -> ModelIdentity:
    return model_switch._identity(Registry(settings.registry_path).get("embedder", version).path)


def _production(settings: Settings) -> str | None:
    return Registry(settings.registry_path).production_version("embedder")


def test_without_a_staged_index_the_promotion_names_the_command(
    settings: Settings, fake_cluster: FakeCluster
) -> None:
    with pytest.raises(RegistryError, match="--backend opensearch --for-embedder v2"):
        promote(settings, "embedder", "v2", actor="test", force=True)
    assert _production(settings) == "v1"
    assert fake_cluster.targets(ALIAS) == [SERVING]


def test_the_alias_moves_to_the_staged_index_with_the_pointer(
    settings: Settings, fake_cluster: FakeCluster
) -> None:
    fake_cluster.add_index(STAGED, _identity(settings, "v2"), **{STAGED_FOR: "v2"})
    promote(settings, "embedder", "v2", actor="test", force=True)
    assert _production(settings) == "v2"
    assert fake_cluster.targets(ALIAS) == [STAGED]
    assert fake_cluster.indices.alias_calls == [
        [{"remove": {"index": SERVING, "alias": ALIAS}}, {"add": {"index": STAGED, "alias": ALIAS}}]
    ]
    assert "retired_at" in fake_cluster.indices.metas[SERVING]
    assert STAGED_FOR not in fake_cluster.indices.metas[STAGED]


def test_a_pointer_that_cannot_move_puts_the_alias_back(
    settings: Settings, fake_cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_cluster.add_index(STAGED, _identity(settings, "v2"), **{STAGED_FOR: "v2"})

    moves = Registry.promote

    def refuse(self: Registry, role: str, *args: Any, **kwargs: Any) -> Any:
        if role == "embedder":
            raise OSError("disk full")
        return moves(self, role, *args, **kwargs)

    monkeypatch.setattr(Registry, "promote", refuse)
    with pytest.raises(OSError, match="disk full"):
        promote(settings, "embedder", "v2", actor="test", force=True)
    assert fake_cluster.targets(ALIAS) == [SERVING]
    assert len(fake_cluster.indices.alias_calls) == 2
    assert "retired_at" not in fake_cluster.indices.metas[SERVING]
    assert fake_cluster.indices.metas[STAGED][STAGED_FOR] == "v2"


def test_a_refused_promotion_leaves_the_alias(
    settings: Settings, fake_cluster: FakeCluster
) -> None:
    fake_cluster.add_index(STAGED, _identity(settings, "v2"), **{STAGED_FOR: "v2"})
    with pytest.raises(PromotionRefusedError):
        promote(settings, "embedder", "v2", actor="test")  # no NDCG@10: the gate refuses
    assert _production(settings) == "v1"
    assert fake_cluster.targets(ALIAS) == [SERVING]
    assert not fake_cluster.indices.alias_calls


def test_an_index_that_accepts_the_embedder_stays(
    settings: Settings, fake_cluster: FakeCluster, tmp_path: Path
) -> None:
    registry = Registry(settings.registry_path)
    same = registry.register("embedder", registry.get("embedder", "v1").path)
    promote(settings, "embedder", same.version, actor="test", force=True)
    assert _production(settings) == same.version
    assert not fake_cluster.indices.alias_calls


def test_an_unreachable_cluster_is_a_registry_error(
    settings: Settings, fake_cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    import opensearchpy

    def unreachable(**_: object) -> bool:
        raise opensearchpy.ConnectionError("N/A", "connection refused", None)

    monkeypatch.setattr(fake_cluster.indices, "exists_alias", unreachable)
    with pytest.raises(RegistryError, match="cannot read OpenSearch alias"):
        promote(settings, "embedder", "v2", actor="test", force=True)
    assert _production(settings) == "v1"


def test_the_index_command_stages_on_opensearch(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from indexer.stores.opensearch.jobs import ReindexResult
    from ranker import cli

    seen: list[str] = []

    def stage(settings: Settings, version: str, **_: Any) -> ReindexResult:
        seen.append(version)
        return ReindexResult(ALIAS, STAGED, 3, [], [], 1.0)

    monkeypatch.setattr(opensearch_switch, "stage_opensearch_index", stage)
    args = ["index", "--backend", "opensearch", "--for-embedder", "v2"]
    result = CliRunner().invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    assert seen == ["v2"]
    assert f"into {STAGED} beside alias {ALIAS}" in result.output
    refused = CliRunner().invoke(cli.app, [*args, "--upsert"])
    assert refused.exit_code == 2
    assert "drop upsert" in refused.output
