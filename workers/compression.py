"""Compression as the workers run it: keyed by its inputs, built once, never twice at once.

:func:`compress_once` hashes compression's inputs (``workers.inputs``) and skips, with a log
line, when a version with that key is registered, or when a run with that key registered
nothing (a memo in Redis says so). Otherwise it takes the Redis lock named by the key,
checks again, and runs ``ranker.compress.job.compress_models`` in a fresh work directory;
the job registers its winner with the key, through the registry's staging directory and
one rename, so a run killed at any point leaves no version behind.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ranker.settings import Settings
from workers.errors import TransientJobError
from workers.inputs import CompressionInputs, compression_inputs
from workers.locks import exclusive, redis_client

if TYPE_CHECKING:
    import redis

    from ranker.registry import Registry

logger = logging.getLogger(__name__)

MEMO_PREFIX = "shoprank:compressed:"
MEMO_TTL_S = 30 * 24 * 3600
ROLE = "reranker"
REPORT_FILES = ("report.md", "report.json", "report.png")

Progress = Callable[..., None]
"""``progress(step, **meta)``: reports a step boundary."""


def version_name(ref: str | None) -> str | None:
    """``v3`` from ``reranker/v3`` (or ``v3``); None stays None."""
    if ref is None:
        return None
    return ref.rpartition("/")[2]


def built(registry: Registry, client: redis.Redis, key: str) -> dict[str, Any] | None:
    """What an earlier run with ``key`` left: the version it registered, or its memo when it
    registered none; None when no run with ``key`` finished."""
    found = registry.find_by_key(ROLE, key)
    if found is not None:
        return {"key": key, "registered": found.version, "candidate": _ref(found.version)}
    memo = client.get(MEMO_PREFIX + key)
    if memo is None:
        return None
    result: dict[str, Any] = json.loads(memo)  # type: ignore[arg-type]
    return result if result.get("registered") is None else None


def _ref(version: str | None) -> dict[str, str] | None:
    return {"role": ROLE, "version": version} if version else None


def compress_once(
    settings: Settings,
    *,
    teacher: str | None,
    judgments: str | None,
    catalog: str | None,
    config: Mapping[str, Any],
    judgment_mapping: Mapping[str, Any] | None = None,
    catalog_mapping: Mapping[str, Any] | None = None,
    promote: bool,
    task_id: str,
    work_dir: Callable[[], Path],
    progress: Progress,
    wait: bool,
) -> dict[str, Any]:
    """Compress ``teacher`` (a reranker version; None: production's source) unless its inputs
    were compressed already, or it is a prior-only reranker (nothing to compress: the chain
    goes on with it as the candidate); returns what was built, or why nothing was
    (``skipped``).

    ``wait``: when another worker holds the key's lock, wait for it, then raise
    TransientJobError so the task retries; else skip (``skipped: in_progress``).
    ``promote``: the job promotes its winner when the registry's gate passes.
    ``work_dir`` makes the job's fresh work directory.
    """
    from ranker.compress.teacher import teacher_candidate
    from ranker.prior import has_cross_encoder
    from ranker.serving_models import open_registry

    progress("inputs", teacher=teacher)
    source = teacher_candidate(settings, teacher)
    if not has_cross_encoder(source.path):
        logger.info("%s is the reranker's prior alone: nothing to compress; skipped", source.label)
        version = source.version.version if source.version is not None else None
        return {"teacher": source.label, "candidate": _ref(version), "skipped": "prior_only"}
    inputs = compression_inputs(
        settings,
        teacher=teacher,
        judgments=judgments,
        catalog=catalog,
        config=config,
        judgment_mapping=judgment_mapping,
        catalog_mapping=catalog_mapping,
    )
    key = inputs.key
    registry = open_registry(settings)
    client = redis_client(settings)
    earlier = built(registry, client, key)
    if earlier is not None:
        logger.info("compression inputs %s unchanged (built: %s); skipped", key[:12], earlier)
        return {**earlier, "inputs": inputs.as_dict(), "skipped": "unchanged"}
    lock_timeout = settings.workers.lock_timeout_s
    wait_s = 2 * lock_timeout if wait else 0.0
    with exclusive(client, f"compress:{key}", timeout_s=lock_timeout, wait_s=wait_s) as held:
        if not held:
            if wait:
                raise TransientJobError(f"compression {key[:12]} is being built by another worker")
            logger.info("compression %s is being built by another worker; skipped", key[:12])
            return {"key": key, "inputs": inputs.as_dict(), "skipped": "in_progress"}
        earlier = built(registry, client, key)
        if earlier is not None:
            logger.info("compression %s was built meanwhile (%s); skipped", key[:12], earlier)
            return {**earlier, "inputs": inputs.as_dict(), "skipped": "unchanged"}
        result = _compress(
            settings, inputs, promote=promote, task_id=task_id, work=work_dir(), progress=progress
        )
        client.set(MEMO_PREFIX + key, json.dumps(result), ex=MEMO_TTL_S)
    return result


def _compress(
    settings: Settings,
    inputs: CompressionInputs,
    *,
    promote: bool,
    task_id: str,
    work: Path,
    progress: Progress,
) -> dict[str, Any]:
    """One compression run in ``work``; the winner is registered with the inputs' key."""
    from ranker.compress.job import compress_models

    teacher = str(inputs.inputs.get("teacher") or "")
    progress("compress", key=inputs.key, teacher=teacher)
    logger.info("compressing %s (inputs %s…) in %s", teacher, inputs.key[:12], work)
    embedder_report, report = compress_models(
        settings,
        inputs.config,
        work_dir=work,
        judgments=inputs.judgments,
        catalog=inputs.catalog,
        key=inputs.key,
        task_id=task_id,
        promote=promote,
        teacher=inputs.teacher,
    )
    registered = version_name(report.registered)
    progress("compressed", key=inputs.key, registered=registered)
    tidy(work)
    teacher_version = teacher.partition("/")[2] if teacher.startswith(ROLE + "/") else None
    return {
        "key": inputs.key,
        "inputs": inputs.as_dict(),
        "registered": registered,
        "promoted": bool(report.promoted) if registered else False,
        "promotion_note": report.promotion_note or None,
        "candidate": _ref(registered or teacher_version),
        "embedder": {
            "registered": version_name(embedder_report.registered),
            "promoted": bool(embedder_report.promoted),
        },
        "teacher": teacher,
        "variants": [
            {"name": v.name, "cv_ndcg@10": v.cv_ndcg, "p50_ms": v.p50_ms, "passes": v.passes}
            for v in report.variants
        ],
        "work_dir": str(work),
        "skipped": None,
    }


def tidy(work: Path) -> None:
    """Remove a finished run's models from its work dir (the registry holds copies); keep
    the report."""
    for entry in work.iterdir() if work.is_dir() else ():
        if entry.name in REPORT_FILES:
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
