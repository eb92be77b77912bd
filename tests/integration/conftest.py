"""Session fixtures for integration tests: a catalog subset, tiny models, settings, an index.

The subset is every catalogued product judged for the first few sample queries plus a fixed
random draw of other sample products, so retrieval has both relevant and unrelated products
to choose from while every model call stays cheap (tiny random BERTs, a few hundred texts).
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from indexer.catalog import (
    Product,
    TextTemplate,
    load_products,
    sample_catalog_path,
    sample_judgments_path,
)
from indexer.jobs import build_index
from ranker.embedder import Embedder
from ranker.evaluation.judgments import Judgments, load_judgments
from ranker.settings import EmbedderSettings, RerankSettings, Settings

SUBSET_QUERIES = 5
"""Judged queries whose products are all in the subset."""
OTHER_PRODUCTS = 150
"""Unjudged (for those queries) sample products added to the subset."""
SUBSET_SEED = 7


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Tiny models gain nothing from threads and lose a lot to contention on a busy machine.

    Restored after each module, so tests elsewhere keep torch's default.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def sample_judgments() -> Judgments:
    """The shipped example judgments (100 queries)."""
    return load_judgments(sample_judgments_path())


@pytest.fixture(scope="session")
def sample_products() -> list[Product]:
    """The whole shipped sample catalog."""
    return load_products(sample_catalog_path())


@pytest.fixture(scope="session")
def subset_qids(sample_judgments: Judgments) -> list[str]:
    """The first judged queries in file order."""
    return list(sample_judgments.queries)[:SUBSET_QUERIES]


@pytest.fixture(scope="session")
def catalog_subset(
    sample_products: list[Product], sample_judgments: Judgments, subset_qids: list[str]
) -> list[Product]:
    """Products judged for ``subset_qids`` plus a fixed draw of others, in catalog order."""
    judged = {pid for qid in subset_qids for pid in sample_judgments.qrels[qid]}
    others = sorted(p.id for p in sample_products if p.id not in judged)
    drawn = set(random.Random(SUBSET_SEED).sample(others, OTHER_PRODUCTS))
    subset = [p for p in sample_products if p.id in judged or p.id in drawn]
    if len({p.id for p in subset} & judged) < len(judged) // 2:
        raise RuntimeError("most judged products are missing from the sample catalog")
    return subset


def write_catalog_jsonl(products: list[Product], path: Path) -> Path:
    """Write products as a JSONL catalog that :func:`load_products` reads back unchanged.

    Free-form attributes are left out: their keys would be read back as catalog columns.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for product in products:
            record: dict[str, Any] = product.model_dump(mode="json", exclude={"attributes"})
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


@pytest.fixture(scope="session")
def subset_catalog_path(
    catalog_subset: list[Product], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The subset as a JSONL catalog file."""
    return write_catalog_jsonl(
        catalog_subset, tmp_path_factory.mktemp("catalog") / "products.jsonl"
    )


@pytest.fixture(scope="session")
def other_tiny_embedder_dir(
    tiny_embedder_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A tiny bi-encoder like ``tiny_embedder_dir`` but with other weights.

    ``make_tiny_model`` always seeds torch with 0, so reseeding before calling it would give
    the same weights; a copy of the tiny embedder is perturbed with another seed instead.
    """
    import torch
    from transformers import BertModel

    directory = tmp_path_factory.mktemp("other-embedder") / "other-tiny-embedder"
    shutil.copytree(tiny_embedder_dir, directory)
    model = BertModel.from_pretrained(str(directory))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    model.save_pretrained(str(directory))
    return directory


@pytest.fixture(scope="session")
def tiny_embedder(tiny_embedder_dir: Path) -> Embedder:
    """The tiny bi-encoder, loaded on the CPU."""
    return Embedder.load(tiny_embedder_dir, backend="torch", batch_size=32)


@pytest.fixture(scope="session")
def integration_settings(
    tmp_path_factory: pytest.TempPathFactory, tiny_embedder_dir: Path, tiny_reranker_dir: Path
) -> Settings:
    """Settings with the tiny models and every path in a temp dir."""
    home = tmp_path_factory.mktemp("shoprank-home")
    return Settings(
        home=home,
        index_dir=home / "index",
        embedder=EmbedderSettings(model=str(tiny_embedder_dir), backend="torch"),
        rerank=RerankSettings(model=str(tiny_reranker_dir), backend="torch"),
    )


@pytest.fixture(scope="session")
def built_index(
    integration_settings: Settings, subset_catalog_path: Path, tiny_embedder: Embedder
) -> dict[str, Any]:
    """The subset's JSONL file indexed into ``integration_settings.index_path``.

    Returns the manifest. Shared by every test that only reads it; tests that change an
    index build their own.
    """
    return build_index(
        load_products(subset_catalog_path),
        integration_settings.index_path,
        embedder=tiny_embedder,
        template=TextTemplate(integration_settings.index.text_template),
        source=str(subset_catalog_path),
        hnsw_threshold=integration_settings.index.hnsw_threshold,
        progress=False,
    )
