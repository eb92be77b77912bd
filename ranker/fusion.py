"""Reciprocal rank fusion of ranked hit lists."""

from __future__ import annotations

from collections.abc import Sequence

from indexer.stores.base import Hit


def reciprocal_rank_fusion(
    ranked_lists: Sequence[Sequence[Hit]],
    *,
    weights: Sequence[float] | None = None,
    k: float = 60.0,
    limit: int | None = None,
) -> list[Hit]:
    """Fuse ranked lists: ``score(d) = sum_i w_i / (k + rank_i(d))``, ranks from 1.

    Cormack, Clarke and Buettcher, "Reciprocal Rank Fusion outperforms Condorcet and
    individual rank learning methods", SIGIR 2009. Ties break by product id, so the result
    is deterministic. A product missing from a list gets nothing from it.
    """
    if not k > 0:  # NaN too
        raise ValueError(f"the RRF constant must be positive, got {k}")
    if weights is None:
        weights = [1.0] * len(ranked_lists)
    if len(weights) != len(ranked_lists):
        raise ValueError(f"{len(weights)} weights for {len(ranked_lists)} ranked lists")
    if any(not weight >= 0 for weight in weights):  # NaN too
        raise ValueError(f"RRF weights must not be negative, got {list(weights)}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must not be negative, got {limit}")
    fused: dict[str, float] = {}
    for hits, weight in zip(ranked_lists, weights, strict=True):
        for rank, hit in enumerate(hits, start=1):
            fused[hit.product_id] = fused.get(hit.product_id, 0.0) + weight / (k + rank)
    ordered = sorted(fused.items(), key=lambda item: (-item[1], item[0]))
    if limit is not None:
        ordered = ordered[:limit]
    return [Hit(product_id, score) for product_id, score in ordered]
