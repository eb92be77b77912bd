"""The reranker's linear prior while it trains: ``w * cos + v . lexical + t * title_cos + b``
as parameters learned beside the cross-encoder, their starting values, and the state the
manifest records (see :mod:`ranker.training.cross_encoder`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ranker.evaluation.judgments import Judgments
from ranker.lexical_features import LEXICAL_FEATURES, lexical_features
from ranker.training.reranker_pairs import (
    LabelledPair,
    PriorScores,
    Unjudged,
    fit_prior,
    labelled_pairs,
    title_cosines,
)

if TYPE_CHECKING:
    from ranker.training.cross_encoder import CrossEncoderConfig

logger = logging.getLogger(__name__)


class TrainablePrior:
    """``w``, ``v``, ``t`` and ``b`` on the training device; ``v`` is empty for a prior
    without lexical features, ``t`` (one weight) for one without the title cosine."""

    def __init__(
        self,
        cosine_weight: float,
        lexical_weights: Sequence[float],
        bias: float,
        *,
        device: torch.device,
        title_weights: Sequence[float] = (),
    ) -> None:
        self.device = device
        self.weight = torch.nn.Parameter(self._floats(cosine_weight))
        self.lexical_weights = torch.nn.Parameter(self._floats(list(lexical_weights)))
        self.bias = torch.nn.Parameter(self._floats(bias))
        self.title_weights = torch.nn.Parameter(self._floats(list(title_weights)))

    @classmethod
    def starting(
        cls,
        pairs: Sequence[LabelledPair],
        *,
        lexical: bool,
        cosine_weight: float,
        l2: float,
        device: torch.device,
    ) -> TrainablePrior:
        """With ``lexical``, the prior fitted alone on the pairs' targets (:func:`fit_prior`,
        with the title cosine when the pairs carry it), so training starts from the best
        such linear ranker; else the cosine at ``cosine_weight``, centred on the pairs'
        mean cosine."""
        if not lexical:
            bias = -cosine_weight * float(np.mean([pair.prior for pair in pairs]))
            return cls(cosine_weight, [], bias, device=device)
        fitted = fit_prior(pairs, l2)
        logger.info(
            "fitted prior: cosine %.3f, %s%s, bias %.3f",
            fitted.weight,
            ", ".join(
                f"{name} {value:.3f}"
                for name, value in zip(LEXICAL_FEATURES, fitted.lexical_weights, strict=True)
            ),
            "".join(f", title cosine {value:.3f}" for value in fitted.title_weights),
            fitted.bias,
        )
        return cls(
            fitted.weight,
            fitted.lexical_weights,
            fitted.bias,
            device=device,
            title_weights=fitted.title_weights,
        )

    @property
    def lexical(self) -> bool:
        """Whether the prior weighs lexical features."""
        return bool(self.lexical_weights.numel())

    @property
    def title(self) -> bool:
        """Whether the prior weighs the title cosine."""
        return bool(self.title_weights.numel())

    def parameters(self) -> list[torch.nn.Parameter]:
        """What the optimizer trains, in the order checkpoints keep them."""
        return [self.weight, self.lexical_weights, self.bias] + (
            [self.title_weights] if self.title else []
        )

    def add_to_logits(self, logits: torch.Tensor, pairs: Sequence[LabelledPair]) -> torch.Tensor:
        """The cross-encoder's logits of a training batch plus the prior of its pairs, with
        gradients."""
        logits = logits + self.weight * self._floats([pair.prior for pair in pairs]) + self.bias
        if self.lexical:
            logits = logits + self._floats([pair.lexical for pair in pairs]) @ self.lexical_weights
        if self.title:
            logits = logits + self._floats([pair.title for pair in pairs]) @ self.title_weights
        return logits

    def add_to_scores(
        self,
        scores: np.ndarray,
        cosines: np.ndarray,
        query: str,
        texts: Sequence[str],
        title_cosines: np.ndarray | None = None,
    ) -> np.ndarray:
        """Scores of one query's texts (the cross-encoder's, or zeros) plus their prior;
        ``title_cosines`` are needed when the prior weighs them."""
        scores = scores + self.weight.item() * cosines + self.bias.item()
        if self.lexical:
            weights = self.lexical_weights.detach().cpu().numpy()
            scores = scores + lexical_features(query, texts) @ weights
        if self.title:
            if title_cosines is None:
                raise ValueError("this prior weighs the title cosine: pass title_cosines")
            scores = scores + self.title_weights.item() * title_cosines
        return scores

    def state(self) -> dict[str, Any]:
        """The parameters now, as the manifest records them (lexical weights and the title
        weight only when the prior has them)."""
        state: dict[str, Any] = {"weight": self.weight.item(), "bias": self.bias.item()}
        if self.lexical:
            state["lexical_weights"] = dict(
                zip(LEXICAL_FEATURES, self.lexical_weights.tolist(), strict=True)
            )
        if self.title:
            state["title_weight"] = self.title_weights.item()
        return state

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Set the parameters to a :meth:`state`."""
        with torch.no_grad():
            self.weight.fill_(float(state["weight"]))
            self.bias.fill_(float(state["bias"]))
            if self.lexical:
                named = state["lexical_weights"]
                self.lexical_weights.copy_(self._floats([named[name] for name in LEXICAL_FEATURES]))
            if self.title:
                self.title_weights.fill_(float(state["title_weight"]))

    def snapshot(self) -> list[torch.Tensor]:
        """The parameters' values, as a checkpoint saves them."""
        return [parameter.detach().clone() for parameter in self.parameters()]

    def restore(self, values: Sequence[torch.Tensor]) -> None:
        """Set the parameters to a :meth:`snapshot`."""
        with torch.no_grad():
            for parameter, value in zip(self.parameters(), values, strict=True):
                parameter.copy_(value)

    def _floats(self, values: Any) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.float32, device=self.device)


def fit_prior_alone(
    judgments: Judgments,
    qids: Sequence[str],
    product_texts: Mapping[str, str],
    config: CrossEncoderConfig,
    priors: PriorScores,
    *,
    unjudged: Unjudged | None = None,
) -> TrainablePrior:
    """The prior fitted alone on ``qids``' pairs (and their ``unjudged`` negatives when the
    config draws them), as :meth:`TrainablePrior.starting` fits it before a cross-encoder
    trains beside it."""
    pairs = labelled_pairs(
        judgments,
        qids,
        product_texts,
        config.targets,
        priors,
        lexical=config.lexical_prior,
        title=config.title_cosine,
        unjudged=unjudged if config.unjudged_negatives else None,
        unjudged_target=config.unjudged_target,
    )
    if not pairs:
        raise ValueError("no training pairs: no judged product has a text")
    return TrainablePrior.starting(
        pairs,
        lexical=config.lexical_prior,
        cosine_weight=config.prior_weight,
        l2=config.prior_l2,
        device=torch.device("cpu"),
    )


def prior_alone_scorer(
    prior: TrainablePrior,
    judgments: Judgments,
    product_texts: Mapping[str, str],
    priors: PriorScores,
) -> Callable[[str, Sequence[str]], np.ndarray]:
    """Scores of a query's products by ``prior`` alone, from the precomputed cosines."""

    def score(qid: str, product_ids: Sequence[str]) -> np.ndarray:
        zeros = np.zeros(len(product_ids), dtype=np.float32)
        return add_prior(prior, zeros, qid, product_ids, judgments, product_texts, priors)

    return score


def add_prior(
    prior: TrainablePrior,
    scores: np.ndarray,
    qid: str,
    product_ids: Sequence[str],
    judgments: Judgments,
    product_texts: Mapping[str, str],
    priors: PriorScores,
) -> np.ndarray:
    """``scores`` of a query's products plus ``prior``, from the precomputed cosines."""
    cosines = np.array([priors[(qid, pid)] for pid in product_ids], dtype=np.float32)
    titles = None
    if prior.title:
        by_pair = title_cosines(priors)
        titles = np.array([by_pair[(qid, pid)] for pid in product_ids], dtype=np.float32)
    texts = [product_texts[pid] for pid in product_ids]
    return prior.add_to_scores(scores, cosines, judgments.queries[qid], texts, titles)
