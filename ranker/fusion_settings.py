"""The fusion settings `shoprank tune-fusion` chose for a shop, and how serving reads them.

The file (default ``<home>/fusion.json``, or ``retrieval.tuned_file``) holds the RRF
constant, the dense and lexical weights and, when tuned, the rerank depth. Every pipeline
opened by :mod:`ranker.loading` (the API, `shoprank search`, `run` and `eval`) applies it,
except where a value was set explicitly (``SHOPRANK_RETRIEVAL__RRF_K=...``), which wins.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from indexer.stores.atomic import write_json_atomic
from ranker.errors import InputError
from ranker.settings import Settings

logger = logging.getLogger(__name__)

FUSION_FILE = "fusion.json"
_RETRIEVAL_FIELDS = ("rrf_k", "dense_weight", "lexical_weight")


class TunedFusion(BaseModel):
    """Fusion settings chosen for one shop, and how they were chosen."""

    model_config = ConfigDict(extra="forbid")

    rrf_k: float = Field(gt=0, description="The RRF constant.")
    dense_weight: float = Field(ge=0)
    lexical_weight: float = Field(ge=0)
    rerank_depth: int | None = Field(default=None, ge=1, description="None: not tuned.")
    tuning: dict[str, Any] = Field(
        default_factory=dict, description="How they were chosen: folds, queries, CV figures."
    )


def fusion_file(settings: Settings) -> Path:
    """Where the shop's tuned fusion settings are read from and written to."""
    return settings.retrieval.tuned_file or settings.home / FUSION_FILE


def read_tuned_fusion(path: Path) -> TunedFusion | None:
    """The tuned settings in ``path``; None when there is no such file.

    Raises:
        InputError: the file exists but is not valid tuned fusion settings.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        return TunedFusion.model_validate(json.loads(text))
    except (ValueError, ValidationError) as exc:
        raise InputError(f"{path}: not tuned fusion settings ({exc})") from exc


def write_tuned_fusion(tuned: TunedFusion, path: Path) -> None:
    """Write the settings atomically (temp file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, tuned.model_dump(mode="json"))


def with_tuned_fusion(settings: Settings) -> Settings:
    """``settings`` with the shop's tuned fusion applied where not set explicitly.

    The rerank depth is capped at ``api.max_documents`` (a warning says so).
    """
    path = fusion_file(settings)
    tuned = read_tuned_fusion(path)
    if tuned is None:
        return settings
    explicit = settings.retrieval.model_fields_set
    retrieval = settings.retrieval.model_copy(
        update={name: getattr(tuned, name) for name in _RETRIEVAL_FIELDS if name not in explicit}
    )
    rerank = settings.rerank
    if tuned.rerank_depth is not None and "depth" not in rerank.model_fields_set:
        depth = min(tuned.rerank_depth, settings.api.max_documents)
        if depth < tuned.rerank_depth:
            logger.warning(
                "tuned rerank depth %d capped at api.max_documents %d",
                tuned.rerank_depth,
                depth,
            )
        rerank = rerank.model_copy(update={"depth": depth})
    logger.info(
        "fusion from %s: rrf_k %g, dense %g, lexical %g, rerank depth %d",
        path,
        retrieval.rrf_k,
        retrieval.dense_weight,
        retrieval.lexical_weight,
        rerank.depth,
    )
    return settings.model_copy(update={"retrieval": retrieval, "rerank": rerank})
