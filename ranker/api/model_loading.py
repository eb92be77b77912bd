"""The API's side of loading models: what serves each role, and why not when it cannot.

Which directory serves is :func:`ranker.serving_models.serving_source`'s to say; building a
model from it is :mod:`ranker.loading`'s. This module adds what a server needs on top:

- a version that fails to verify or load never crashes the server. Whatever onnxruntime,
  safetensors, torch or the tokenizer raise while loading becomes one line that names the
  version and the file (:func:`load_failure`);
- when the registry's production version is refused, the newest earlier production version
  that verifies and loads serves instead (:func:`earlier_sources`), and the reason is kept
  for ``/healthz``. A model the settings name outright has no such fallback.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

from ranker.embedder import Embedder
from ranker.errors import ShoprankError
from ranker.model_files import ONNX_MODEL_NAME
from ranker.registry import Registry, RegistryError, Role
from ranker.reranker import Reranker
from ranker.serving_models import ModelSource, earlier_sources, explicit_model, serving_source
from ranker.settings import Settings

logger = logging.getLogger(__name__)

SAFETENSORS_NAME = "model.safetensors"
MAX_DETAIL_CHARS = 300
"""A loader's own message is cut to this many characters in a reason."""
RESOLVE_ERRORS: tuple[type[BaseException], ...] = (ShoprankError, OSError, ValueError)
"""What resolving a role's source raises when it cannot: registry errors, missing files."""

ModelT = TypeVar("ModelT")


class ModelLoader(Protocol):
    """Builds models from sources (tests inject a fake one)."""

    def load_embedder(self, settings: Settings, source: ModelSource) -> Embedder:
        """The bi-encoder in ``source``."""
        ...

    def load_reranker(
        self, settings: Settings, source: ModelSource, *, embedder: Embedder | None
    ) -> Reranker:
        """The cross-encoder in ``source``; ``embedder`` feeds its dense prior."""
        ...


class FactoryLoader:
    """The real loader: :func:`ranker.loading.load_embedder` and ``load_reranker``."""

    def load_embedder(self, settings: Settings, source: ModelSource) -> Embedder:
        from ranker.loading import load_embedder

        return load_embedder(settings, source=source)

    def load_reranker(
        self, settings: Settings, source: ModelSource, *, embedder: Embedder | None
    ) -> Reranker:
        from ranker.loading import load_reranker

        return load_reranker(settings, embedder=embedder, source=source)


@dataclass(frozen=True)
class LoadedModels:
    """What start-up loaded: the models, the sources they came from, per-role problems."""

    embedder: Embedder | None = None
    reranker: Reranker | None = None
    embedder_source: ModelSource | None = None
    reranker_source: ModelSource | None = None
    problems: Mapping[str, str] = field(default_factory=dict)


def load_failure(label: str, path: Path, exc: BaseException) -> str:
    """One line for a model that did not load: the version, the file when known, the cause."""
    module = type(exc).__module__ or ""
    detail = " ".join(str(exc).split())[:MAX_DETAIL_CHARS] or type(exc).__name__
    weights = None
    if module.startswith("onnxruntime") or "protobuf" in detail.lower():
        weights = ONNX_MODEL_NAME
    elif module.startswith("safetensors") or "safetensors" in detail.lower():
        weights = SAFETENSORS_NAME
    cause = f"{type(exc).__name__}: {detail}"
    if weights is not None and (path / weights).is_file():
        return f"{label}: file {weights} cannot be loaded ({cause})"
    where = "" if str(path) in label else f" from {path}"
    return f"{label}: cannot be loaded{where} ({cause})"


def source_label(role: Role, source: ModelSource) -> str:
    """``reranker/v3`` for a registry version, ``reranker <directory>`` for an explicit one."""
    return source.label if source.version is not None else f"{role} {source.path}"


def try_load(
    role: Role, source: ModelSource, load: Callable[[ModelSource], ModelT]
) -> tuple[ModelT | None, str | None]:
    """``load(source)``, or None and the reason it failed; never raises for a bad model.

    onnxruntime raises its own pybind exceptions (``InvalidProtobuf`` for a truncated
    ``model.onnx``), safetensors ``SafetensorError``, torch ``RuntimeError`` or
    ``UnpicklingError``; none of them may take the server down, so every Exception counts.
    """
    try:
        return load(source), None
    except Exception as exc:
        reason = load_failure(source_label(role, source), source.path, exc)
        logger.warning("refused %s", reason, exc_info=logger.isEnabledFor(logging.DEBUG))
        return None, reason


def production_name(registry: Registry, role: Role) -> str | None:
    """The production pointer's version, or None when it is missing or unreadable."""
    try:
        return registry.production_version(role)
    except RegistryError:
        return None


def resolve_and_load(
    settings: Settings, role: Role, load: Callable[[ModelSource], ModelT]
) -> tuple[ModelT | None, ModelSource | None, str | None]:
    """Load what serves ``role``; when it is refused, the newest earlier good version.

    Returns the model (None: nothing loadable), its source and why production does not
    serve (None when it does).
    """
    problem: str | None = None
    refused: set[str] = set()
    try:
        source: ModelSource | None = serving_source(settings, role)
    except RESOLVE_ERRORS as exc:
        problem, source = _message(exc), None
    if source is not None:
        model, problem = try_load(role, source, load)
        if model is not None:
            return model, source, None
        if source.version is not None:
            refused.add(source.version.version)
    if _pinned(settings, role):
        return None, None, problem  # the settings name this model; nothing else may serve
    registry = Registry(settings.registry_path)
    if (current := production_name(registry, role)) is not None:
        refused.add(current)
    for candidate in earlier_sources(registry, role, exclude=refused):
        model, _ = try_load(role, candidate, load)
        if model is not None:
            logger.warning("%s; serving %s, an earlier production version", problem, candidate)
            return model, candidate, f"{problem}; serving {candidate.label} instead"
    return None, None, problem


def load_models(settings: Settings, loader: ModelLoader | None = None) -> LoadedModels:
    """The bi-encoder, then the reranker (whose dense prior needs the bi-encoder)."""
    loader = loader or FactoryLoader()
    problems: dict[str, str] = {}
    embedder, embedder_source, problem = resolve_and_load(
        settings, "embedder", lambda source: loader.load_embedder(settings, source)
    )
    if problem is not None:
        problems["embedder"] = problem
    reranker, reranker_source, problem = resolve_and_load(
        settings,
        "reranker",
        lambda source: loader.load_reranker(settings, source, embedder=embedder),
    )
    if problem is not None:
        problems["reranker"] = problem
    return LoadedModels(embedder, reranker, embedder_source, reranker_source, problems)


def files_fingerprint(path: Path | None) -> tuple[tuple[str, int, int, int], ...]:
    """Size, mtime and ctime of every file under ``path``: cheap, and any write changes it
    (ctime even when mtime is set back)."""
    if path is None or not path.is_dir():
        return ()
    found = []
    for root, _, names in os.walk(path):
        for name in names:
            full = os.path.join(root, name)
            try:
                stat = os.stat(full)
            except OSError:
                continue
            found.append((full, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns))
    return tuple(sorted(found))


def _pinned(settings: Settings, role: Role) -> bool:
    """Whether the settings name ``role``'s model outright (a broken name counts)."""
    try:
        return explicit_model(settings, role) is not None
    except RESOLVE_ERRORS:
        return True


def _message(exc: BaseException) -> str:
    return exc.message if isinstance(exc, ShoprankError) else str(exc)
