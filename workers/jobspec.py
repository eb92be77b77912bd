"""The job kinds the workers run and the parameters each takes, checked before anything runs.

Parameters are plain JSON values (ids, paths as strings, numbers, small dicts of
overrides), never objects or settings: the worker builds its own settings. Relative paths
are made absolute where the job is submitted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from ranker.sharded_indexing import MAX_SHARDS
from workers.errors import UnknownJobKindError

TASK_PREFIX = "shoprank."
MAYBE_COMPRESS = TASK_PREFIX + "maybe_compress"

Role = Literal["embedder", "reranker"]


def _absolute(value: str) -> str:
    return str(Path(value).expanduser().absolute())


PathText = Annotated[str, AfterValidator(_absolute)]
"""A path as a string, made absolute where the job is submitted."""


def _catalog_mapping(value: dict[str, Any]) -> dict[str, Any]:
    from indexer.catalog import FieldMapping

    mapping = FieldMapping.model_validate(value)
    joined = [_absolute(name) for name in mapping.join]
    return mapping.model_copy(update={"join": tuple(joined)}).model_dump(
        mode="json", exclude_defaults=True
    )


def _judgment_mapping(value: dict[str, Any]) -> dict[str, Any]:
    from ranker.evaluation.judgment_files import JudgmentMapping

    return JudgmentMapping.model_validate(value).model_dump(mode="json", exclude_defaults=True)


CatalogMapping = Annotated[dict[str, Any], AfterValidator(_catalog_mapping)]
"""A catalog's FieldMapping as JSON (fields, attributes, join, duplicates), checked where the
job is submitted; its join paths made absolute there."""
JudgmentMappingJson = Annotated[dict[str, Any], AfterValidator(_judgment_mapping)]
"""A judgments file's JudgmentMapping as JSON (fields, gains, gain_base), checked where the
job is submitted."""


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class JobParams(_Params):
    """Parameters most kinds share: the judgments and catalog files (default: settings) and
    the mappings they are read with (default: ESCI's columns)."""

    judgments: PathText | None = Field(default=None, description="Judgments CSV or JSONL.")
    catalog: PathText | None = Field(
        default=None,
        description="Catalog file; default: settings, else with judgments the index's catalog.",
    )
    catalog_mapping: CatalogMapping | None = Field(
        default=None, description='e.g. {"fields": {"id": "product_uid"}}.'
    )
    judgment_mapping: JudgmentMappingJson | None = Field(
        default=None, description='e.g. {"fields": {"gain": "relevance"}, "gain_base": 1}.'
    )


class IndexParams(_Params):
    """``index``: a full build, an upsert or a delete, on either backend; a full build of
    a large catalog in ``shards`` tasks."""

    catalog: PathText | None = Field(default=None, description="Default: the sample catalog.")
    catalog_mapping: CatalogMapping | None = None
    backend: Literal["embedded", "opensearch"] | None = None
    upsert: bool = False
    delete: PathText | None = Field(default=None, description="A file of product ids to remove.")
    from_embedded: bool = False
    for_embedder: str | None = Field(
        default=None,
        description="Build the index for this candidate bi-encoder version beside the serving "
        "one; promoting it swaps the two.",
    )
    shards: int = Field(
        default=1,
        ge=1,
        le=MAX_SHARDS,
        description="A full build in this many shards, embedded as separate tasks.",
    )

    @model_validator(mode="after")
    def _sharded_builds_only(self) -> IndexParams:
        if self.shards > 1 and (
            self.upsert or self.delete or self.from_embedded or self.for_embedder
        ):
            raise ValueError(
                "shards apply to a full build, not to upsert, delete, a copy or a staged index"
            )
        if self.shards > 1 and self.catalog_mapping:
            raise ValueError("a sharded build reads the catalog with the default mapping only")
        return self


class FinetuneParams(JobParams):
    """``finetune_reranker`` and ``finetune_embedder``: training overrides, cross-validation
    folds."""

    overrides: dict[str, Any] = Field(
        default_factory=dict, description="Training hyperparameters (e.g. epochs)."
    )
    folds: int = Field(default=0, ge=0, description="Cross-validate first; 0: skip.")


class CompressParams(JobParams):
    """``compress``: distil the teacher, export, quantize, gate; register the winner."""

    teacher: str | None = Field(
        default=None, description="Reranker version to distil; default: production's source."
    )
    config: dict[str, Any] = Field(
        default_factory=dict, description="CompressConfig fields over settings.workers.compress."
    )
    promote: bool = Field(
        default=True, description="Promote the winner when the registry's gate passes."
    )


class EvaluateParams(JobParams):
    """``evaluate``: measure a candidate on this machine beside production."""

    role: Role = "reranker"
    version: str | None = Field(default=None, description="Default: the upstream candidate.")
    repeats: int = Field(default=30, ge=1, description="Timed rerank-50 calls.")


class PromoteParams(_Params):
    """``promote``: the gate, then the production pointer when it passes."""

    role: Role = "reranker"
    version: str | None = Field(default=None, description="Default: the upstream candidate.")
    force: bool = False
    actor: str = "worker"


class RetrainParams(FinetuneParams):
    """``retrain``: fine-tune the reranker, compress it, evaluate, promote when gated."""

    compress: dict[str, Any] = Field(
        default_factory=dict, description="CompressConfig fields for the compress step."
    )
    force: bool = False


class MaybeCompressParams(JobParams):
    """``maybe_compress``: compress only when compression's inputs changed."""


PARAMS: dict[str, type[BaseModel]] = {
    "index": IndexParams,
    "finetune_reranker": FinetuneParams,
    "finetune_embedder": FinetuneParams,
    "compress": CompressParams,
    "evaluate": EvaluateParams,
    "promote": PromoteParams,
    "retrain": RetrainParams,
    "maybe_compress": MaybeCompressParams,
}
"""Every job kind and its parameters."""
KINDS: tuple[str, ...] = tuple(PARAMS)


def task_name(kind: str) -> str:
    """The Celery task that runs a one-step ``kind``."""
    return TASK_PREFIX + kind


def parse_params(kind: str, params: dict[str, Any]) -> BaseModel:
    """``params`` checked for ``kind``; UnknownJobKindError names what is wrong."""
    model = PARAMS.get(kind)
    if model is None:
        raise UnknownJobKindError(f"unknown job kind {kind!r}; choose one of {', '.join(KINDS)}")
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'params'}: {error['msg']}"
            for error in exc.errors()
        )
        raise UnknownJobKindError(f"bad parameters for {kind}: {problems}") from exc
