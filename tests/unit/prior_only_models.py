"""A prior-only reranker in a test's registry, for tests of what refuses or skips one."""

from __future__ import annotations

from pathlib import Path


def register_prior_only(home: Path, files_from: Path) -> str:
    """A prior-only reranker registered in the registry under ``home``; its version."""
    from ranker.prior_files import prior_manifest, write_prior_only
    from ranker.serving_models import open_registry
    from ranker.settings import Settings

    identity = {"model_id": "e", "weights_sha256": "0" * 64, "dimension": 32}
    prior_only = write_prior_only(
        home.parent / f"{home.name}-prior-only",
        prior_manifest({"weight": 1.0, "bias": 0.0}, identity),
        files_from=files_from,
        manifest={"data_sha256": "d"},
    )
    return open_registry(Settings(home=home)).register("reranker", prior_only).version
