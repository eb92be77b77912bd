"""The reranker's training pairs and its prior: targets, bi-encoder cosines, lexical features,
the unjudged negatives, and the linear prior fitted on them before the cross-encoder trains
(see :mod:`ranker.training.cross_encoder`)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import torch

from ranker.catalog_vectors import CatalogVectors, ProductVectors
from ranker.evaluation.judgments import Judgments
from ranker.lexical_features import lexical_features
from ranker.prior import title_vectors

Unjudged = Mapping[str, Sequence[str]]
"""qid -> retrieved products not judged for it (the weak negatives drawn for it)."""


PriorScores = Mapping[tuple[str, str], float]
"""(qid, product id) -> bi-encoder cosine."""


class PairCosines(Mapping[tuple[str, str], float]):
    """The bi-encoder's cosine of each (qid, product id) pair with the product's text, as a
    :data:`PriorScores`; and, when they were computed, with the product's title (the
    text's first line) under :attr:`titles`."""

    def __init__(
        self,
        texts: Mapping[tuple[str, str], float],
        titles: Mapping[tuple[str, str], float] | None = None,
    ) -> None:
        self._texts = texts
        self.titles = titles

    def __getitem__(self, key: tuple[str, str]) -> float:
        return self._texts[key]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._texts)

    def __len__(self) -> int:
        return len(self._texts)


def title_cosines(priors: PriorScores | None) -> Mapping[tuple[str, str], float]:
    """The title cosines ``priors`` carry; a ValueError when they carry none."""
    titles = priors.titles if isinstance(priors, PairCosines) else None
    if titles is None:
        raise ValueError(
            "a prior with the title cosine needs the pairs' title cosines "
            "(dense_priors(..., titles=True))"
        )
    return titles


@dataclass(frozen=True)
class LabelledPair:
    """A judged pair as training sees it: its target, bi-encoder cosine and lexical features."""

    qid: str
    query: str
    text: str
    target: float
    prior: float
    lexical: tuple[float, ...] = ()
    title: tuple[float, ...] = ()
    """The cosine with the product's title, when the prior weighs it; else empty."""


def labelled_pairs(
    judgments: Judgments,
    qids: Sequence[str],
    product_texts: Mapping[str, str],
    targets: Mapping[str, float],
    priors: PriorScores | None,
    *,
    lexical: bool = False,
    title: bool = False,
    unjudged: Unjudged | None = None,
    unjudged_target: float = 0.0,
) -> list[LabelledPair]:
    """The training pairs of ``qids``: each judged product with a text, its target from
    ``targets`` (or its numeric label scaled into [0, 1]), its prior cosine, (with
    ``lexical``) its lexical features and (with ``title``) its title cosine, which
    ``priors`` must carry (:class:`PairCosines`); then the query's ``unjudged`` products
    with the ``unjudged_target``."""
    pairs = []
    titles = title_cosines(priors) if title else None
    scale = _numeric_label_scale(judgments, targets)
    for qid in qids:
        query = judgments.queries[qid]
        labelled: list[tuple[str, str | None]] = [
            (product_id, label)
            for product_id, label in judgments.labels[qid].items()
            if product_id in product_texts
        ]
        labelled += [
            (product_id, None)
            for product_id in (unjudged or {}).get(qid, ())
            if product_id in product_texts and product_id not in judgments.labels[qid]
        ]
        texts = [product_texts[product_id] for product_id, _ in labelled]
        features = lexical_features(query, texts).tolist() if lexical else [[]] * len(texts)
        for (product_id, label), text, row in zip(labelled, texts, features, strict=True):
            if label is None:
                target = unjudged_target
            else:
                target = targets[label] if label in targets else float(label) / scale
            prior = priors[(qid, product_id)] if priors is not None else 0.0
            title_cosine = (titles[(qid, product_id)],) if titles is not None else ()
            pairs.append(LabelledPair(qid, query, text, target, prior, tuple(row), title_cosine))
    return pairs


def _numeric_label_scale(judgments: Judgments, targets: Mapping[str, float]) -> float:
    """What numeric labels are divided by to make targets in [0, 1]: the largest of them
    (Home Depot's gains 0-2, Crowdflower's 0-3), or 1 when none is above 1."""
    numbers = [
        float(label)
        for judged in judgments.labels.values()
        for label in judged.values()
        if label not in targets
    ]
    return max([1.0, *numbers])


class FittedPrior(NamedTuple):
    """``w * cos + v . lexical + t . title_cos + b`` as :func:`fit_prior` returns it."""

    weight: float
    lexical_weights: list[float]
    bias: float
    title_weights: list[float]
    """One weight when the pairs carry a title cosine, else none."""


def fit_prior(pairs: Sequence[LabelledPair], l2: float) -> FittedPrior:
    """The prior's weights fitted to the pairs' targets alone (binary cross-entropy, as the
    model trains; L2 on every weight but the bias), over the features the pairs carry."""
    features = torch.tensor(
        [[pair.prior, *pair.lexical, *pair.title] for pair in pairs], dtype=torch.float64
    )
    targets = torch.tensor([pair.target for pair in pairs], dtype=torch.float64)
    weights = torch.zeros(features.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weights, bias], max_iter=200, line_search_fn="strong_wolfe")

    def objective() -> torch.Tensor:
        optimizer.zero_grad()
        logits = features @ weights + bias
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)
        loss = loss + l2 * (weights**2).sum()
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    optimizer.step(objective)  # type: ignore[no-untyped-call]
    fitted = weights.detach().tolist()
    lexical_end = 1 + (len(pairs[0].lexical) if pairs else 0)
    return FittedPrior(fitted[0], fitted[1:lexical_end], float(bias.detach()), fitted[lexical_end:])


def dense_priors(
    embedder: Any,
    judgments: Judgments,
    product_texts: Mapping[str, str],
    unjudged: Unjudged | None = None,
    *,
    stored: CatalogVectors | None = None,
    titles: bool = False,
) -> PairCosines:
    """Bi-encoder cosine of every judged (query, product) pair, and of every unjudged
    negative drawn for a query. A product whose text the index holds (``stored``, built for
    ``embedder``) has its vector read there, as serving reads it; the rest are embedded.
    With ``titles``, also each pair's cosine with the product's title (its text's first
    line; a one-line text is its own title), embedded as the prior embeds them."""
    extra = unjudged or {}
    paired = {qid: [*judged, *extra.get(qid, ())] for qid, judged in judgments.qrels.items()}
    product_ids = sorted({pid for pids in paired.values() for pid in pids})
    product_ids = [pid for pid in product_ids if pid in product_texts]
    row_of = {pid: row for row, pid in enumerate(product_ids)}
    texts = [product_texts[pid] for pid in product_ids]
    products = ProductVectors(embedder, stored).of(texts, progress=True)
    qids = list(judgments.queries)
    queries = embedder.embed([judgments.queries[qid] for qid in qids])

    def cosines(vectors: npt.NDArray[np.float32]) -> dict[tuple[str, str], float]:
        return {
            (qid, pid): float(vectors[row_of[pid]] @ query)
            for qid, query in zip(qids, queries, strict=True)
            for pid in paired[qid]
            if pid in row_of
        }

    if not titles:
        return PairCosines(cosines(products))
    titled = title_vectors(
        texts, products, lambda titles: embedder.embed(titles, progress=len(titles) > 1000)
    )
    return PairCosines(cosines(products), cosines(titled))


def pairs_digest(pairs: Sequence[LabelledPair]) -> str:
    """SHA-256 of the training pairs (what a checkpoint must have been trained on)."""
    digest = hashlib.sha256()
    for pair in pairs:
        title = f"\t{pair.title!r}" if pair.title else ""
        digest.update(f"{pair.qid}\t{pair.text}\t{pair.target!r}\t{pair.prior!r}{title}\n".encode())
    return digest.hexdigest()
