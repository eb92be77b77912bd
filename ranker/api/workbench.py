"""The relevance workbench: the page ``GET /ui`` and the two read-only routes it adds.

The page (``ranker/api/ui/``: HTML, one vanilla script, one stylesheet, no build step) is
built from the API's own routes: ``POST /search`` once per column (lexical, dense, hybrid,
hybrid + rerank, and the rerank with a second model version), ``POST /judgments`` for the
labels and each column's NDCG@10, and ``GET /rerankers`` for the versions to compare. See
``docs/workbench.md``.

The judgments are the file ``api.judgments`` names; by default the sample judgments when
the index was built from the sample catalog (a shop's own catalog would match none of
their products), else none.
"""

from __future__ import annotations

import logging
import threading
from importlib import resources
from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from indexer.catalog import sample_catalog_path, sample_judgments_path
from ranker.api.deps import ServiceDep, SettingsDep
from ranker.api.errors import (
    NotFoundError,
    RequestValidationFailedError,
    error_responses,
)
from ranker.api.schemas import (
    NDCG_K,
    JudgmentsRequest,
    JudgmentsResponse,
    RerankersResponse,
    RerankerVersion,
)
from ranker.evaluation.judgments import load_judgments
from ranker.evaluation.metrics import NDCG_AT_10
from ranker.evaluation.query_judgments import JudgmentLookup
from ranker.registry import Registry
from ranker.settings import Settings

logger = logging.getLogger(__name__)

PAGE = "index.html"
STATIC_FILES = {
    "workbench.js": "text/javascript; charset=utf-8",
    "workbench.css": "text/css; charset=utf-8",
}
"""The page's static files and their media types; nothing else under /ui/static is served."""

workbench_router = APIRouter(tags=["workbench"])


def ui_file(name: str) -> Path:
    """A file of the page, from the installed package (``ranker/api/ui``)."""
    return Path(str(resources.files("ranker.api") / "ui" / name))


def judgments_path(settings: Settings) -> Path | None:
    """The judgments the workbench shows: ``api.judgments``, else the sample judgments when
    the index on disk was built from the sample catalog, else None."""
    if settings.api.judgments is not None:
        return settings.api.judgments
    from indexer.jobs import read_index_manifest
    from indexer.stores.base import StoreError

    try:
        source = read_index_manifest(settings.index_path).get("source")
    except (StoreError, OSError):
        return None
    if not source:
        return None
    try:
        from_sample = Path(str(source)).resolve() == sample_catalog_path().resolve()
    except OSError:
        return None
    return sample_judgments_path() if from_sample else None


class WorkbenchJudgments:
    """The judgments file, read once on first use (a bad file answers 422 each time)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lookup: JudgmentLookup | None = None
        self._path: Path | None = None
        self._resolved = False
        self._lock = threading.Lock()

    def lookup(self) -> tuple[JudgmentLookup | None, Path | None]:
        """The judged queries and the file they came from; (None, None) without a file."""
        with self._lock:
            if not self._resolved:
                path = judgments_path(self.settings)
                if path is not None:
                    self._lookup = JudgmentLookup(
                        load_judgments(path, gains=self.settings.label_gains)
                    )
                    logger.info("the workbench shows the judgments of %s", path)
                self._path, self._resolved = path, True
            return self._lookup, self._path


@workbench_router.get("/ui", response_class=FileResponse, summary="The relevance workbench page")
async def page() -> FileResponse:
    """The workbench page (HTML). ``/ui?q=kindle`` searches on load; the other parameters
    (``brand``, ``category``, ``price_min``, ``price_max``, ``k``, ``a``, ``b``: the two
    reranker versions) are read from the address too."""
    return FileResponse(ui_file(PAGE), media_type="text/html; charset=utf-8")


@workbench_router.get("/ui/static/{name}", include_in_schema=False, responses=error_responses(404))
async def static_file(name: str) -> FileResponse:
    """The page's script and stylesheet; any other name is 404."""
    media_type = STATIC_FILES.get(name)
    if media_type is None:
        raise NotFoundError(f"no file {name!r} in the workbench")
    return FileResponse(ui_file(name), media_type=media_type)


@workbench_router.post(
    "/judgments",
    response_model=JudgmentsResponse,
    responses=error_responses(400, 401, 403, 413, 422, 500),
)
async def judgments(
    body: JudgmentsRequest, request: Request, settings: SettingsDep
) -> JudgmentsResponse:
    """The query's judged products (labels and gains) and the NDCG@10 of each ranking
    given, from the judgments the server was started with (``SHOPRANK_API__JUDGMENTS``;
    default: the sample judgments when the index holds the sample catalog). A query they do
    not hold answers ``judged: false``. 422 for a ranking longer than ``api.max_k`` or with
    a repeated product id in its top 10."""
    for name, ranked in body.rankings.items():
        if len(ranked) > settings.api.max_k:
            raise RequestValidationFailedError(
                f"rankings.{name} holds {len(ranked)} ids, above the limit {settings.api.max_k}"
            )
    source: WorkbenchJudgments = request.app.state.workbench_judgments
    lookup, path = await run_in_threadpool(source.lookup)
    found = lookup.find(body.query) if lookup is not None else None
    file_name = path.name if path is not None else None
    if found is None:
        return JudgmentsResponse(query=body.query, judged=False, source=file_name)
    ndcg = {}
    for name, ranked in body.rankings.items():
        try:
            ndcg[name] = found.ndcg(ranked, k=NDCG_K)
        except ValueError as exc:
            raise RequestValidationFailedError(f"rankings.{name}: {exc}") from exc
    return JudgmentsResponse(
        query=body.query,
        judged=True,
        query_id=found.query_id,
        labels=found.labels,
        gains=found.gains,
        ndcg=ndcg,
        source=file_name,
    )


@workbench_router.get(
    "/rerankers", response_model=RerankersResponse, responses=error_responses(401, 403, 500)
)
async def rerankers(
    response: Response, service: ServiceDep, settings: SettingsDep
) -> RerankersResponse:
    """The registry's reranker versions (no secrets: version, state, date, NDCG@10), which
    one is production and which one serves here; any of them can be named in
    ``POST /search``'s ``model_version``."""
    registry = Registry(settings.registry_path)
    found = await run_in_threadpool(registry.versions, "reranker")
    production = await run_in_threadpool(registry.production_version, "reranker")
    response.headers["cache-control"] = "no-store"
    return RerankersResponse(
        production=production,
        serving=service.snapshot.versions().get("reranker"),
        versions=[
            RerankerVersion(
                version=version.version,
                ref=version.ref,
                state=version.state.value,
                created_at=version.manifest.get("created_at"),
                ndcg_at_10=_number(version.metrics.get(NDCG_AT_10)),
            )
            for version in found
        ],
    )


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
