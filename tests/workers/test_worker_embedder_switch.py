"""A new bi-encoder through the workers: an index job builds its index beside the serving one,
and the promote job swaps index and pointer together."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from workerstack import RedisServer, Stack, WorkerData, new_stack, wait_for

from indexer.jobs import read_index_manifest
from ranker.model_files import weights_sha256
from ranker.model_switch import staged_index_path
from workers.client import submit_job

pytestmark = pytest.mark.workers


@pytest.fixture
def stack(redis_server: RedisServer, worker_data: WorkerData, tmp_path: Path) -> Iterator[Stack]:
    shared = new_stack(redis_server, worker_data, tmp_path / "home")
    shared.start("w1")
    yield shared
    shared.stop_all()


def _other_weights(embedder_dir: Path, target: Path) -> Path:
    """A copy of the tiny bi-encoder with other weights (so other vectors)."""
    import torch
    from transformers import BertModel

    shutil.copytree(embedder_dir, target)
    model = BertModel.from_pretrained(str(target))
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    model.save_pretrained(str(target))
    return target


def test_an_index_job_stages_and_the_promote_job_switches(stack: Stack, tmp_path: Path) -> None:
    settings = stack.settings()
    candidate_dir = _other_weights(stack.data.embedder, tmp_path / "other-embedder")
    candidate = stack.registry().register("embedder", candidate_dir, job="test").version
    serving = read_index_manifest(stack.home / "index")["embedder"]["weights_sha256"]

    refused = wait_for(
        settings, submit_job(settings, "promote", {"role": "embedder", "version": candidate})
    )
    assert refused["state"] == "FAILURE"  # no index for it yet: an error naming the fix
    assert "--for-embedder" in refused["error"]

    staged = wait_for(
        settings,
        submit_job(
            settings, "index", {"catalog": str(stack.data.catalog), "for_embedder": candidate}
        ),
    )
    assert staged["state"] == "SUCCESS", staged
    assert staged["result"]["action"] == "stage"
    assert read_index_manifest(stack.home / "index")["embedder"]["weights_sha256"] == serving

    promoted = wait_for(
        settings,
        submit_job(settings, "promote", {"role": "embedder", "version": candidate, "force": True}),
    )
    assert promoted["state"] == "SUCCESS", promoted
    assert promoted["result"]["promoted"] is True
    assert stack.registry().production_version("embedder") == candidate
    built = read_index_manifest(stack.home / "index")["embedder"]["weights_sha256"]
    assert built == weights_sha256(candidate_dir) != serving
    assert not staged_index_path(settings, candidate).exists()
