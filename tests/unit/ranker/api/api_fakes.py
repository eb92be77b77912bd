"""Weight-free fakes for the API unit tests: models that score by their version number."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from indexer.caching import TextCache
from indexer.stores.base import ModelIdentity
from ranker.api.service import Service
from ranker.reranker import PreparedPairs
from ranker.serving_models import ModelSource
from ranker.settings import Settings
from ranker.stages import PreparedTokens


class FakeTokenizer:
    """Counts whitespace words as tokens, plus [CLS] and [SEP]."""

    max_length = 64

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(text.split()) + 2 for text in texts]

    def truncate_text(self, text: str, max_tokens: int, *, side: str = "right") -> str:
        words = text.split()
        return " ".join(words[len(words) - max_tokens :] if side == "left" else words[:max_tokens])


def fake_tokens(texts: Sequence[str]) -> PreparedTokens:
    """One row per text, as long as FakeTokenizer counts it (every id 0)."""
    rows = tuple(np.zeros(len(text.split()) + 2, dtype=np.int64) for text in texts)
    return PreparedTokens(ids=rows, type_ids=rows, pad_id=0)


class FakeBackend:
    name = "fake"
    device = "cpu"

    def __init__(self) -> None:
        self.warmups = 0

    def warmup(self, *, batch_size: int, seq_len: int) -> float:
        self.warmups += 1
        return 0.0

    def health(self) -> bool:
        return True


class FakeReranker:
    """Scores every document with the same logit: its ``score`` (say, its version number).

    The routes run its stages: ``infer`` stands for the model (a subclass may hold or fail
    the batch there, on the model's thread), and ``finish`` answers what ``score`` gives, so
    a subclass that overrides ``score`` changes what every rerank route answers.
    """

    def __init__(self, model_id: str, score: float = 0.0, *, prior: Any = None) -> None:
        self.model_id = model_id
        self.logit = score
        self.prior = prior
        self.tokenizer = FakeTokenizer()
        self.backend = FakeBackend()
        self.embedder: Any = None
        self.batch_size = 8
        self.has_cross_encoder = True

    def score(self, query: str, documents: Sequence[str]) -> np.ndarray:
        return np.full(len(documents), self.logit, dtype=np.float32)

    def prepare(self, query: str, documents: Sequence[str], **_: Any) -> PreparedPairs:
        tokens = fake_tokens([f"{query} {document}" for document in documents])
        return PreparedPairs(query, False, tuple(documents), tokens)

    def infer(self, inputs: Sequence[PreparedTokens]) -> list[np.ndarray]:
        return [np.full(tokens.rows, self.logit, dtype=np.float32) for tokens in inputs]

    def finish(
        self, prepared: PreparedPairs, logits: np.ndarray, **_: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        scores = self.score(prepared.query, prepared.documents)
        return scores, np.zeros_like(scores)


class FakeEmbedder:
    def __init__(self, model_id: str, weights: str = "w1", lineage: tuple[str, ...] = ()) -> None:
        self.identity = ModelIdentity(model_id, weights, 4, lineage)
        self.dimension = 4
        self.tokenizer = FakeTokenizer()
        self.backend = FakeBackend()
        self.batch_size = 8
        self.query_cache: TextCache[np.ndarray] = TextCache(0)

    def embed(self, texts: Sequence[str], *, normalize: bool = True) -> np.ndarray:
        return np.ones((len(texts), 4), dtype=np.float32) / 2.0

    def keep_query_vector(self, query: str, vector: np.ndarray) -> np.ndarray:
        return vector

    def prepare(self, texts: Sequence[str]) -> PreparedTokens:
        return fake_tokens(texts)

    def infer(self, inputs: Sequence[PreparedTokens]) -> list[np.ndarray]:
        return [np.ones((tokens.rows, 4), dtype=np.float32) / 2.0 for tokens in inputs]

    def finish(self, vectors: np.ndarray, *, normalize: bool = True) -> np.ndarray:
        return vectors


def fake_model_dir(directory: Path, *, marker: str) -> Path:
    """A directory the registry accepts: config.json and one weights file."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps({"marker": marker}), encoding="utf-8")
    (directory / "model.safetensors").write_bytes(marker.encode() * 64)
    return directory


class FakeLoader:
    """Builds fake models; the reranker's logit is its version number (v2 scores 2.0)."""

    def __init__(self) -> None:
        self.fail: dict[str, BaseException] = {}
        self.loaded: list[str] = []

    def load_embedder(self, settings: Settings, source: ModelSource) -> Any:
        self._maybe_fail(source)
        marker = json.loads((source.path / "config.json").read_text())["marker"]
        lineage = tuple(json.loads((source.path / "config.json").read_text()).get("lineage", []))
        return FakeEmbedder(f"emb-{marker}", weights=marker, lineage=lineage)

    def load_reranker(self, settings: Settings, source: ModelSource, *, embedder: Any) -> Any:
        self._maybe_fail(source)
        number = float(source.version.version[1:]) if source.version is not None else 0.0
        reranker = FakeReranker(f"rr-{source.label}", number)
        reranker.embedder = embedder
        return reranker

    def _maybe_fail(self, source: ModelSource) -> None:
        self.loaded.append(source.label)
        if source.label in self.fail:
            raise self.fail[source.label]


def fake_service(
    *,
    reranker: Any = None,
    embedder: Any = None,
    reranker_source: ModelSource | None = None,
    embedder_source: ModelSource | None = None,
) -> Service:
    """A service of fakes with no index."""
    return Service(
        embedder=embedder,
        reranker=reranker,
        pipeline=None,
        problems=[],
        reranker_source=reranker_source,
        embedder_source=embedder_source,
    )
