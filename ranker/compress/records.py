"""What the compression steps hand each other: the config, variant rows and the report.

Every step writes its result as JSON and the next one reads it back, so a Celery chain can
pass paths between tasks; these records are those documents.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from indexer.stores.atomic import atomic_write_bytes

TEACHER = "teacher (torch fp32)"
PRECISIONS = {"torch": "torch fp32", "onnx-fp32": "onnx fp32", "onnx-int8": "onnx int8"}
"""Each student's variants: directory name -> how the report names it."""
RERANK_DEPTH = 50


class CompressConfig(BaseModel):
    """What `shoprank compress` tries and how it judges."""

    layers: tuple[int, ...] = Field(
        default=(0, 1, 2),
        description="Teacher layers students keep; 0: the prior alone (no transformer), "
        "which the gate picks wherever the cross-encoder adds nothing over its prior.",
    )
    max_lengths: tuple[int, ...] = Field(
        default=(40, 48), description="Students' maximum pair lengths (word pieces)."
    )
    embedder_max_lengths: tuple[int, ...] = Field(
        default=(64,),
        description="Shorter input lengths (word pieces) the bi-encoder is also tried at.",
    )
    folds: int = Field(default=3, ge=2)
    pseudo_queries: int = Field(default=1000, ge=0)
    judged_query_depth: int = Field(
        default=30, ge=0, description="Retrieved products scored per judged query."
    )
    pseudo_query_depth: int = Field(default=10, ge=1)
    max_ndcg_drop: float = Field(default=0.01, ge=0)
    latency_repeats: int = Field(default=30, ge=1)
    student: dict[str, Any] = Field(
        default_factory=dict, description="StudentConfig overrides (max_length, epochs, ...)."
    )
    miss_embedder: dict[str, Any] = Field(
        default_factory=dict,
        description="MissEmbedderConfig overrides (layers, max_length, epochs, ...) for the "
        "0-layer student's embedder of texts the index does not hold.",
    )
    prior_l2: float = Field(
        default=1e-3, ge=0, description="L2 penalty on the 0-layer student's prior weights."
    )


@dataclass
class Variant:
    """One model variant: its speed, size and cross-validated quality."""

    name: str
    path: str | None
    layers: int
    precision: str
    max_length: int | None = None
    size_mb: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    pairs_per_s: float = 0.0
    cv_ndcg: float | None = None
    passes: bool = False
    note: str = ""


@dataclass
class CompressionReport:
    """Every variant side by side, the teacher's NDCG, the one the gate chose and what
    became of it in the registry."""

    teacher: str
    teacher_cv_ndcg: float
    folds: int
    gate_ndcg: float | None = None
    """The figure the gate holds students to, None: ``teacher_cv_ndcg`` (see
    ``ranker.compress.gate``); ``gate_basis`` says which it is."""
    gate_basis: str = "the teacher on the same queries"
    variants: list[Variant] = field(default_factory=list)
    served: str | None = None
    """The variant the gate chose (the fastest that passed), None when none passed."""
    served_path: str | None = None
    """Its model directory in the registry once registered."""
    seconds: float = 0.0
    registered: str | None = None
    """The registry version the chosen variant became (``reranker/v3``)."""
    promoted: bool = False
    promotion_note: str = ""
    """Why it was not promoted (the promotion gate's reasons)."""
    reused: bool = False
    """True when a run with the same inputs (``key``) built it before and nothing ran."""

    @property
    def gate_value(self) -> float:
        """The NDCG@10 the gate compares with (before ``max_ndcg_drop``)."""
        return self.teacher_cv_ndcg if self.gate_ndcg is None else self.gate_ndcg

    @property
    def chosen(self) -> Variant | None:
        """The variant row the gate chose, if any."""
        return next((v for v in self.variants if v.name == self.served), None)

    def as_dict(self) -> dict[str, Any]:
        """Plain values, for JSON."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CompressionReport:
        """The report :meth:`as_dict` wrote (unknown keys are ignored)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known and k != "variants"}
        return cls(**values, variants=[variant_from_dict(v) for v in data.get("variants", [])])


def variant_from_dict(data: dict[str, Any]) -> Variant:
    """A variant row read back from JSON."""
    known = {f.name for f in fields(Variant)}
    return Variant(**{k: v for k, v in data.items() if k in known})


def write_json(path: Path, document: Any) -> Path:
    """``document`` as indented JSON at ``path``, atomically; returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, json.dumps(document, indent=2).encode())
    return path


def read_json(path: Path) -> Any:
    """A JSON document a step wrote."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def outcome_line(
    chosen: str | None, *, registered: str | None, promoted: bool, note: str, nothing: str
) -> str:
    """The report's sentence on what became of the gate's choice (``nothing``: when none)."""
    if chosen is None:
        return f"Served: unchanged ({nothing})."
    if registered is None:
        return f"Chosen: {chosen} (not registered{': ' + note if note else ''})."
    if promoted:
        return f"Served: {chosen} (registered {registered}, promoted)."
    return f"Chosen: {chosen}; registered {registered}, not promoted: {note or 'not asked'}."
