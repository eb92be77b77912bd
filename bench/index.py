"""Indexing throughput (docs/s): the embedded build against OpenSearch bulk, side by side.

On the first ``--docs`` products of the sample catalog (all of them with ``--full``), with
the served bi-encoder and text template, one timed pass each:

- **embedding only**: the bi-encoder over the product texts, nothing stored;
- **embedded build** (the baseline): ``indexer.jobs.build_index``, embedding, FAISS,
  SQLite FTS5 and the product store, swapped in as a directory;
- **embedded build, stored vectors**: the same build given the vectors of the first pass,
  so embedding costs nothing;
- **OpenSearch reindex**: ``reindex_catalog``: embedding and bulk loading into a new
  versioned index, refresh, verification and the alias swap;
- **OpenSearch copy**: ``copy_embedded_index`` (``shoprank index --backend opensearch
  --from-embedded``): the same reindex from the embedded index built above, its vectors
  read back from FAISS, embedding nothing.

The model is warmed up on one batch first. OpenSearch is a dev node the bench starts and
stops by its PID (java and mvn needed), or the cluster at ``--opensearch-url`` with the
``SHOPRANK_OPENSEARCH__*`` credentials; there the bench works under its own alias
(``shoprank-bench-index``) and deletes what it made.

Run: ``python -m bench.index [--json] [--docs 512 | --full] [--opensearch-url URL]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import quiet_libraries, ratio_table

logger = logging.getLogger(__name__)

BENCH_ALIAS = "shoprank-bench-index"
DEFAULT_DOCS = 512
EMBED_ONLY = "embedding only (bi-encoder)"
EMBEDDED = "embedded build: FAISS + SQLite FTS5"
EMBEDDED_STORED = "embedded build, stored vectors"
OPENSEARCH = "OpenSearch reindex: embed + bulk"
OPENSEARCH_COPY = "OpenSearch copy of the embedded index"
BASELINE = EMBEDDED


@dataclass(frozen=True, slots=True)
class Pass:
    """One timed pass: what it did and how long it took."""

    variant: str
    seconds: float
    embeds: bool


WITHOUT_EMBEDDING = {EMBEDDED: EMBEDDED_STORED, OPENSEARCH: OPENSEARCH_COPY}
"""Each pass that embeds and the pass that does the same work from stored vectors."""


def rows_from_passes(passes: Sequence[Pass], *, docs: int) -> list[dict[str, Any]]:
    """Table rows with docs/s and the speed-up against :data:`BASELINE` (higher: faster).

    A pass that embeds also gets ``embedding_share``: the part of its time the same work
    from stored vectors (:data:`WITHOUT_EMBEDDING`) did not need, i.e. embedding's share;
    the embedding-only pass is all embedding.
    """
    if docs < 1:
        raise ValueError(f"docs must be positive, got {docs}")
    by_name = {p.variant: p for p in passes}
    if BASELINE not in by_name:
        raise ValueError(f"the passes lack the baseline {BASELINE!r}")
    base_rate = docs / by_name[BASELINE].seconds
    rows: list[dict[str, Any]] = []
    for p in passes:
        rate = docs / p.seconds
        share: float | None = None
        if p.variant == EMBED_ONLY:
            share = 1.0
        elif p.embeds and WITHOUT_EMBEDDING.get(p.variant) in by_name:
            without = by_name[WITHOUT_EMBEDDING[p.variant]].seconds
            share = max(0.0, 1.0 - without / p.seconds)
        rows.append(
            {
                "variant": p.variant,
                "embeds": "yes" if p.embeds else "no",
                "seconds": p.seconds,
                "docs_per_s": rate,
                "embedding_share": share,
                "embedding": "-" if share is None else f"{100 * share:.0f} %",
                "speedup": rate / base_rate,
            }
        )
    return rows


def render(result: dict[str, Any]) -> str:
    """The rows as a table; the speed-up column is docs/s against the embedded build."""
    table = ratio_table(
        result["rows"],
        columns=[
            ("embeds", "embeds"),
            ("seconds", "seconds"),
            ("docs/s", "docs_per_s"),
            ("embedding share", "embedding"),
        ],
        baseline=BASELINE,
    )
    return (
        f"indexing: {result['docs']} products of the sample catalog, bi-encoder "
        f"{result['embedder']}; OpenSearch: {result['opensearch']}\n{table}"
    )


@contextlib.contextmanager
def _cluster(url: str | None, *, work: Path) -> Iterator[tuple[Any, str]]:
    """OpenSearch settings for the bench and where they point: ``url``, or a dev node."""
    from ranker.settings import Settings

    settings = Settings().opensearch
    if url is not None:
        yield settings.model_copy(update={"url": url, "index_alias": BENCH_ALIAS}), url
        return
    from indexer.stores.opensearch.devnode import running_node, tools_missing

    missing = tools_missing()
    if missing:
        raise RuntimeError(
            f"the OpenSearch dev node needs {' and '.join(missing)} on PATH; or give "
            "--opensearch-url"
        )
    with running_node(
        settings.devnode_cache_dir.expanduser(), home=work / "node", heap=settings.devnode_heap
    ) as node:
        config = settings.model_copy(
            update={"url": node.url, "index_alias": BENCH_ALIAS, "replicas": 0}
        )
        yield config, f"dev node (PID {node.pid})"


def _clean_up(client: Any, alias: str) -> None:
    """Delete the bench's indexes and index template on a cluster that outlives the bench."""
    from indexer.stores.opensearch.aliases import versioned_indexes
    from indexer.stores.opensearch.client import import_opensearch

    for name in versioned_indexes(client, alias):
        client.indices.delete(index=name, ignore_unavailable=True)
    with contextlib.suppress(import_opensearch().NotFoundError):
        client.indices.delete_index_template(name=alias)


def _timed(variant: str, *, embeds: bool, fn: Any) -> Pass:
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    logger.info("%s: %.1f s", variant, seconds)
    return Pass(variant, seconds, embeds)


def run(*, docs: int | None = DEFAULT_DOCS, opensearch_url: str | None = None) -> dict[str, Any]:
    """Time each pass once on the first ``docs`` products (None: the whole catalog)."""
    from indexer.catalog import TextTemplate, load_products, sample_catalog_path
    from indexer.jobs import build_index
    from indexer.stores.opensearch.client import make_client
    from indexer.stores.opensearch.copy import StoredVectors, copy_embedded_index
    from indexer.stores.opensearch.jobs import reindex_catalog
    from ranker.loading import load_embedder
    from ranker.settings import Settings

    quiet_libraries()
    load_before = os.getloadavg()
    settings = Settings()
    products = load_products(sample_catalog_path())
    products = products[:docs] if docs is not None else products
    template = TextTemplate(settings.index.text_template)
    texts = [template.render(p) for p in products]
    embedder = load_embedder(settings)
    embedder.embed(texts[:64])
    source = f"sample catalog, first {len(products)}"
    passes: list[Pass] = []
    vectors: list[Any] = []
    passes.append(_timed(EMBED_ONLY, embeds=True, fn=lambda: vectors.append(embedder.embed(texts))))
    stored = StoredVectors(embedder.identity, dict(zip(texts, vectors[0], strict=True)))
    with tempfile.TemporaryDirectory(prefix="shoprank-bench-index-") as tmp:
        work = Path(tmp)

        def build(embedder: Any, name: str) -> None:
            build_index(
                products,
                work / name,
                embedder=embedder,
                template=template,
                source=source,
                hnsw_threshold=settings.index.hnsw_threshold,
                hnsw_m=settings.index.hnsw_m,
                ef_construction=settings.index.hnsw_ef_construction,
                ef_search=settings.index.hnsw_ef_search,
                progress=False,
            )

        passes.append(_timed(EMBEDDED, embeds=True, fn=lambda: build(embedder, "embedded")))
        passes.append(_timed(EMBEDDED_STORED, embeds=False, fn=lambda: build(stored, "stored")))
        with _cluster(opensearch_url, work=work) as (config, where):
            client = make_client(config)
            try:
                passes.append(
                    _timed(
                        OPENSEARCH,
                        embeds=True,
                        fn=lambda: reindex_catalog(
                            products,
                            config=config,
                            embedder=embedder,
                            template=template,
                            source=source,
                            client=client,
                            progress=False,
                        ),
                    )
                )
                passes.append(
                    _timed(
                        OPENSEARCH_COPY,
                        embeds=False,
                        fn=lambda: copy_embedded_index(
                            work / "embedded", config=config, client=client, progress=False
                        ),
                    )
                )
            finally:
                if opensearch_url is not None:
                    _clean_up(client, config.index_alias)
    return {
        "task": "index",
        "docs": len(products),
        "embedder": f"{embedder.identity.model_id} ({embedder.backend.name})",
        "opensearch": where,
        "bulk_max_docs": config.bulk_max_docs,
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "rows": rows_from_passes(passes, docs=len(products)),
    }


def main() -> None:
    """Command line: print the table, or JSON with ``--json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print JSON")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--docs", type=int, default=DEFAULT_DOCS, help="products (the first n)")
    size.add_argument("--full", action="store_true", help="the whole sample catalog")
    parser.add_argument(
        "--opensearch-url", default=None, help="a cluster to use instead of a dev node"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("opensearch").setLevel(logging.WARNING)
    from ranker.hardware import describe_machine

    result = run(docs=None if args.full else args.docs, opensearch_url=args.opensearch_url)
    if args.json:
        print(json.dumps({"machine": describe_machine(), "index": result}, indent=2))
    else:
        print(render(result))


if __name__ == "__main__":
    main()
