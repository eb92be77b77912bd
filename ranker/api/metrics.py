"""The API's Prometheus metrics, in one registry per app (tests build many apps).

Requests are labelled by route template (``/admin/jobs/{job_id}``), never by raw path, so a
client cannot grow the exposition with made-up paths: a path no route matches is
``unmatched``, and a method no route takes is ``other``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.routing import Route

if TYPE_CHECKING:
    from ranker.api.service import Service

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The Prometheus text format's media type."""

REQUEST_SECONDS = "shoprank_request_duration_seconds"
STAGE_SECONDS = "shoprank_stage_duration_seconds"
IN_FLIGHT = "shoprank_requests_in_flight"
CONCURRENCY_LIMIT = "shoprank_max_concurrent_requests"
MODEL_INFO = "shoprank_model"
INDEX_INFO = "shoprank_index"
BATCH_REQUESTS = "shoprank_batch_requests"
BATCH_TOKENS = "shoprank_batch_padded_tokens"
QUEUE_TOKENS = "shoprank_queue_padded_tokens"
RERANK_COST = "shoprank_reranker_cost_ms"

UNMATCHED = "unmatched"
"""The route label of a request no route matches."""
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_REQUEST_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
BATCH_TOKEN_BUCKETS = (64, 256, 1024, 2048, 4096, 8192, 16_384, 32_768, 65_536)


def route_templates(app: FastAPI) -> list[str]:
    """Every route's path template, in routing order: the documented ones (with their
    routers' prefixes), then the undocumented plain routes (``/docs``)."""
    documented = list(app.openapi().get("paths", {}))
    plain = [route.path for route in app.routes if isinstance(route, Route)]
    return list(dict.fromkeys([*documented, *plain]))


def method_label(method: str) -> str:
    """``method`` when it is a standard one, else ``other``."""
    return method if method in METHODS else "other"


class _ServingModels(Collector):
    """``shoprank_model_info{role, version, backend, device}``, ``shoprank_index_info`` and
    the serving reranker's cost model, ``shoprank_reranker_cost_ms{term}``, read from the
    service's snapshot at each scrape (hot reload changes them)."""

    def __init__(self, service: Callable[[], Service | None]) -> None:
        self._service = service

    def collect(self) -> Iterator[Metric]:
        models = InfoMetricFamily(MODEL_INFO, "The models serving now.", labels=["role"])
        index = InfoMetricFamily(INDEX_INFO, "The configured search index backend.")
        cost = GaugeMetricFamily(
            RERANK_COST,
            "The serving reranker's cost model, measured at warm-up: milliseconds per call "
            "(fixed), per pair and per token.",
            labels=["term"],
        )
        service = self._service()
        if service is not None:
            snapshot = service.snapshot
            versions = snapshot.versions()
            for role, model in (("embedder", snapshot.embedder), ("reranker", snapshot.reranker)):
                if model is not None:
                    backend = model.backend
                    models.add_metric(
                        [role],
                        {
                            "version": versions.get(role, ""),
                            "backend": backend.name,
                            "device": backend.device,
                        },
                    )
            index.add_metric([], {"backend": service.backend})
            fitted = snapshot.reranker_cost
            if fitted is not None:
                cost.add_metric(["fixed"], fitted.fixed_ms)
                cost.add_metric(["per_pair"], fitted.per_pair_ms)
                cost.add_metric(["per_token"], fitted.per_token_ms)
        yield models
        yield index
        yield cost


class Metrics:
    """The app's histograms, gauges and serving-model info; thread-safe."""

    def __init__(
        self, *, max_concurrent_requests: int, service: Callable[[], Service | None]
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests = Histogram(
            REQUEST_SECONDS,
            "Wall time of each request, by route template, method and status.",
            ["route", "method", "status"],
            buckets=REQUEST_BUCKETS,
            registry=self.registry,
        )
        self._stages = Histogram(
            STAGE_SECONDS,
            "Time of each stage a request ran (validate, tokenize, queue, infer, prior, "
            "embed_query, dense, lexical, fusion, fetch, rerank, total).",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            IN_FLIGHT, "Requests holding a concurrency slot now.", registry=self.registry
        )
        limit = Gauge(
            CONCURRENCY_LIMIT, "Slots before the API answers 429.", registry=self.registry
        )
        limit.set(max_concurrent_requests)
        self._batch_requests = Histogram(
            BATCH_REQUESTS,
            "Requests in the batch each batched request ran in, by model role.",
            ["model"],
            buckets=BATCH_REQUEST_BUCKETS,
            registry=self.registry,
        )
        self._batch_tokens = Histogram(
            BATCH_TOKENS,
            "Padded tokens (rows times the longest row) of the batch each batched request "
            "ran in, by model role.",
            ["model"],
            buckets=BATCH_TOKEN_BUCKETS,
            registry=self.registry,
        )
        self._queue_tokens = Gauge(
            QUEUE_TOKENS,
            "Padded tokens waiting for the model, by model role (as the last batched "
            "request left the queue).",
            ["model"],
            registry=self.registry,
        )
        self.registry.register(_ServingModels(service))

    def observe(self, *, route: str, method: str, status: int, seconds: float) -> None:
        """Count one request and its wall time."""
        self._requests.labels(route, method_label(method), str(status)).observe(seconds)

    def observe_stages(self, timings_ms: Mapping[str, float]) -> None:
        """Add the per-stage times (tokenize, retrieve, rerank ...) of one request."""
        for stage, milliseconds in timings_ms.items():
            self._stages.labels(stage).observe(milliseconds / 1e3)

    def observe_batch(
        self, model: str, *, requests: int, padded_tokens: int, queued_tokens: int
    ) -> None:
        """One request's batch on ``model`` (how many requests and padded tokens it held)
        and the model's queue depth in padded tokens after it."""
        self._batch_requests.labels(model).observe(requests)
        self._batch_tokens.labels(model).observe(padded_tokens)
        self._queue_tokens.labels(model).set(queued_tokens)

    def render(self) -> bytes:
        """The Prometheus exposition text."""
        return generate_latest(self.registry)
