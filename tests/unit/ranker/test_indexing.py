"""``ranker.indexing``: one job API for both backends; the CLI's `index` goes through it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from indexer.catalog import Product
from indexer.jobs import read_index_manifest
from indexer.stores.base import ModelIdentity
from ranker import cli
from ranker.indexing import (
    IndexOutcome,
    IndexRequest,
    IndexRequestError,
    check_request,
    resolve_backend,
    run_index_job,
)
from ranker.settings import Settings

DIMENSION = 8


class HashEmbedder:
    """Unit vectors from a hash of each text: deterministic, weight-free."""

    identity = ModelIdentity("hash", "1" * 64, DIMENSION)

    def embed(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        rows = []
        for text in texts:
            digest = hashlib.sha256(text.encode()).digest()
            row = np.frombuffer(digest[:DIMENSION], dtype=np.uint8).astype(np.float32) + 1
            rows.append(row / np.linalg.norm(row))
        return np.stack(rows)


def _catalog(path: Path, ids: Sequence[str]) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        for pid in ids:
            product = Product(id=pid, title=f"product {pid}", brand="acme")
            record = product.model_dump(mode="json", exclude={"attributes"})
            handle.write(json.dumps(record) + "\n")
    return path


def test_the_action_follows_the_request() -> None:
    assert IndexRequest().action == "build"
    assert IndexRequest(upsert=True).action == "upsert"
    assert IndexRequest(upsert=True, delete=Path("ids.txt")).action == "delete"
    assert IndexRequest(from_embedded=True).action == "copy"
    assert IndexRequest(for_embedder="v3").action == "stage"


def test_the_backend_is_the_request_s_else_the_settings() -> None:
    settings = Settings()
    assert resolve_backend(settings, IndexRequest()) == settings.index.backend
    assert resolve_backend(settings, IndexRequest(backend="opensearch")) == "opensearch"


@pytest.mark.parametrize(
    ("request_", "backend", "message"),
    [
        (IndexRequest(from_embedded=True), "embedded", "needs the opensearch backend"),
        (IndexRequest(from_embedded=True, upsert=True), "opensearch", "takes no catalog"),
        (IndexRequest(backend="elastic"), "embedded", "unknown index backend"),  # type: ignore[arg-type]
        (IndexRequest(for_embedder="v3", upsert=True), "embedded", "is a full build"),
    ],
)
def test_contradictory_requests_are_refused(
    request_: IndexRequest, backend: Any, message: str
) -> None:
    with pytest.raises(IndexRequestError, match=message):
        check_request(request_, backend)


def test_build_upsert_and_delete_on_the_embedded_backend(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, index_dir=tmp_path / "index")
    embedder = HashEmbedder()

    built = run_index_job(
        settings,
        IndexRequest(catalog=_catalog(tmp_path / "a.jsonl", ["p1", "p2", "p3"])),
        embedder=embedder,
        progress=False,
    )
    assert (built.backend, built.action, built.count) == ("embedded", "build", 3)
    assert built.summary.startswith(f"indexed 3 products into {settings.index_path} (")

    upserted = run_index_job(
        settings,
        IndexRequest(catalog=_catalog(tmp_path / "b.jsonl", ["p3", "p4"]), upsert=True),
        embedder=embedder,
    )
    assert (upserted.action, upserted.count) == ("upsert", 2)
    assert read_index_manifest(settings.index_path)["count"] == 4

    ids = tmp_path / "ids.txt"
    ids.write_text("p1\n\np9\n")
    deleted = run_index_job(settings, IndexRequest(delete=ids))
    assert (deleted.action, deleted.count, deleted.details) == ("delete", 1, {"requested": 2})
    assert deleted.summary == f"deleted 1 of 2 products from {settings.index_path}"
    assert read_index_manifest(settings.index_path)["count"] == 3
    assert json.loads(json.dumps(deleted.as_dict()))["count"] == 1


def test_the_index_command_runs_the_job_and_prints_its_summary(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: dict[str, IndexRequest] = {}

    def fake_job(settings: Settings, request: IndexRequest, **_: Any) -> IndexOutcome:
        seen["request"] = request
        return IndexOutcome("embedded", "upsert", 2, "var/index", "upserted 2 products into x")

    monkeypatch.setattr("ranker.indexing.run_index_job", fake_job)
    result = CliRunner().invoke(cli.app, ["index", "--upsert", "--backend", "embedded"])

    assert result.exit_code == 0, result.output
    assert result.output.strip() == "upserted 2 products into x"
    assert seen["request"] == IndexRequest(backend="embedded", upsert=True)


def test_the_index_command_keeps_its_flag_errors() -> None:
    result = CliRunner().invoke(cli.app, ["index", "--from-embedded", "--backend", "embedded"])
    assert result.exit_code == 2
    assert "--from-embedded needs --backend opensearch" in result.output
