"""docs/your-own-shop.md, run: index, train, compress, eval and run on a shop's own files,
by flags alone, with the tiny models.

The shops are a few dozen made-up products and a few judged queries, written in Home
Depot's and in Crowdflower's CSV formats (their column names and grade scales; none of
their rows). Compression's own work is covered by test_compress_job; here it is replaced
by a recorder, to check what the command hands it.
"""

from __future__ import annotations

import csv
import gzip
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from indexer.catalog import CatalogFile
from ranker.evaluation.judgment_files import JudgmentsFile, derived_query_id
from ranker.model_files import MANIFEST_NAME
from ranker.settings import get_settings

pytestmark = pytest.mark.slow

DOC = Path(__file__).parents[2] / "docs" / "your-own-shop.md"

HOME_DEPOT_CATALOG = [
    "--catalog",
    "train.csv.gz",
    "--field",
    "id=product_uid",
    "--catalog-duplicates",
    "first",
    "--attributes",
    "",
    "--catalog-join",
    "product_descriptions.csv.gz",
]
HOME_DEPOT_JUDGMENTS = [
    "--judgments",
    "train.csv.gz",
    "--judgment-field",
    "query=search_term",
    "--judgment-field",
    "product_id=product_uid",
    "--judgment-field",
    "gain=relevance",
    "--gain-base",
    "1",
]
CROWDFLOWER_CATALOG = ["--catalog", "train.csv.gz", "--field", "id=id", "--attributes", ""]
CROWDFLOWER_JUDGMENTS = [
    "--judgments",
    "train.csv.gz",
    "--judgment-field",
    "product_id=id",
    "--judgment-field",
    "gain=median_relevance",
    "--gain-base",
    "1",
]
SHOPS = {
    "homedepot": (HOME_DEPOT_CATALOG, HOME_DEPOT_JUDGMENTS),
    "crowdflower": (CROWDFLOWER_CATALOG, CROWDFLOWER_JUDGMENTS),
}

KINDS = ("cordless drill", "claw hammer", "interior paint", "kitchen faucet", "step ladder")
MAKERS = ("Acme", "Brightline", "Cobalt", "Dunmore", "Everfield", "Foxglen", "Granton")
QUERIES = ("cordless drill", "hammer", "white paint", "faucet for kitchen", "ladder")


def _shell(flags: list[str]) -> str:
    return " ".join("''" if flag == "" else flag for flag in flags)


def _products() -> Iterator[tuple[int, str, str]]:
    """(uid, title, description) of 35 made-up products, seven makers of five kinds."""
    uid = 200000
    for kind in KINDS:
        for number, maker in enumerate(MAKERS):
            uid += 1
            title = f"{maker} {kind} model {number + 1}"
            yield uid, title, f"A {kind} made by {maker}, for home and garden work."


OWN_GRADES = (3, 3, 2.67, 2.33, 2, 2, 1.67)
"""Home Depot's grades (means of 1-3) of a query's own kind, best first; others get 1."""
JUDGED_PER_QUERY = len(OWN_GRADES) + 2


def _judged() -> Iterator[tuple[str, int, str, str, float]]:
    """(query, uid, title, description, grade 1-3) for each query: its kind's seven
    products, graded, and two products of another kind, graded 1."""
    products = list(_products())
    for number, query in enumerate(QUERIES):
        own = products[number * 7 : number * 7 + 7]
        other = products[((number + 1) % 5) * 7 : ((number + 1) % 5) * 7 + 2]
        for (uid, title, description), grade in zip(own, OWN_GRADES, strict=True):
            yield query, uid, title, description, grade
        for uid, title, description in other:
            yield query, uid, title, description, 1


def _write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    with gzip.open(path, "wt", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_home_depot(folder: Path) -> None:
    """train.csv.gz (id,product_uid,product_title,search_term,relevance; relevance a mean
    of 1-3 grades) and product_descriptions.csv.gz (product_uid,product_description)."""
    rows = [
        [row_id, uid, title, query, f"{grade:g}"]
        for row_id, (query, uid, title, _, grade) in enumerate(_judged(), start=2)
    ]
    header = ["id", "product_uid", "product_title", "search_term", "relevance"]
    _write_csv(folder / "train.csv.gz", header, rows)
    descriptions = [[uid, description] for uid, _, description in _products()]
    _write_csv(
        folder / "product_descriptions.csv.gz",
        ["product_uid", "product_description"],
        descriptions,
    )


def write_crowdflower(folder: Path) -> None:
    """train.csv.gz (id,query,product_title,product_description,median_relevance,
    relevance_variance; median_relevance 1-4)."""
    rows = [
        [row_id, query, title, description, round(grade) + 1, "0.471" if grade % 1 else "0"]
        for row_id, (query, _, title, description, grade) in enumerate(_judged(), start=1)
    ]
    header = [
        "id",
        "query",
        "product_title",
        "product_description",
        "median_relevance",
        "relevance_variance",
    ]
    _write_csv(folder / "train.csv.gz", header, rows)


@pytest.fixture
def shop_home(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    tiny_embedder_dir: Path,
    tiny_reranker_dir: Path,
) -> Iterator[Path]:
    """A working folder holding the shop's files, with SHOPRANK_* set to the tiny models;
    training starts from the tiny reranker, with the dense prior over the tiny bi-encoder,
    and bi-encoder training from the tiny bi-encoder."""
    from ranker.training import jobs

    monkeypatch.chdir(tmp_path)
    for name, value in {
        "SHOPRANK_HOME": str(tmp_path / "var"),
        "SHOPRANK_EMBEDDER__MODEL": str(tiny_embedder_dir),
        "SHOPRANK_EMBEDDER__BACKEND": "torch",
        "SHOPRANK_RERANK__MODEL": str(tiny_reranker_dir),
        "SHOPRANK_RERANK__BACKEND": "torch",
    }.items():
        monkeypatch.setenv(name, value)
    tiny = {"base_model": str(tiny_reranker_dir), "evals_per_epoch": 1}
    config = jobs.reranker_config
    monkeypatch.setattr(
        jobs, "reranker_config", lambda settings, overrides: config(settings, {**overrides, **tiny})
    )
    tiny_bi = {"base_model": str(tiny_embedder_dir), "evals_per_epoch": 1, "batch_size": 4}
    bi_config = jobs.bi_encoder_config
    monkeypatch.setattr(
        jobs,
        "bi_encoder_config",
        lambda settings, overrides: bi_config(settings, {**overrides, **tiny_bi}),
    )
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def shoprank(*arguments: str) -> str:
    """Run ``shoprank`` in this process; its output, after checking it succeeded."""
    from ranker.cli import app

    result = CliRunner().invoke(app, list(arguments))
    assert result.exit_code == 0, result.output
    return result.output


def test_the_doc_shows_each_shop_s_flag_set() -> None:
    doc = DOC.read_text(encoding="utf-8")
    for catalog, judgments in SHOPS.values():
        assert _shell(catalog) in doc
        assert _shell(judgments) in doc
    readme = (DOC.parents[1] / "README.md").read_text(encoding="utf-8")
    assert "docs/your-own-shop.md" in readme


@pytest.mark.parametrize("shop", list(SHOPS))
def test_the_walkthrough_runs_on_a_shop_s_own_files(
    shop: str, shop_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (write_home_depot if shop == "homedepot" else write_crowdflower)(shop_home)
    catalog, judgments = SHOPS[shop]

    # 2. Index: the manifest records the catalog and its mapping.
    shoprank("index", *catalog)
    manifest = json.loads((shop_home / "var" / "index" / "manifest.json").read_text())
    assert manifest["count"] == (35 if shop == "homedepot" else JUDGED_PER_QUERY * len(QUERIES))
    assert manifest["source"] == str(shop_home / "train.csv.gz")
    assert manifest["catalog_mapping"]["attributes"] == []

    # 4. Train on the judgments alone: the catalog is the index's.
    trained = shoprank("train", *judgments, "--epochs", "0.2")
    summary = json.loads(trained[trained.index("{") :])
    assert summary["version"] == "v2"
    assert summary["train_queries"] + summary["validation_queries"] == len(QUERIES)
    # ... or the reranker's prior alone, registered as a prior-only reranker.
    fitted = shoprank("train", *judgments, "--prior-only")
    assert json.loads(fitted[fitted.index("{") :])["version"] == "v3"
    prior_only = shop_home / "var" / "registry" / "reranker" / "v3" / "model"
    assert json.loads((prior_only / "shoprank.json").read_text())["cross_encoder"] is False
    # ... with the title cosine too, for titles followed by descriptions.
    titled = shoprank("train", *judgments, "--prior-only", "--title-cosine")
    assert json.loads(titled[titled.index("{") :])["version"] == "v4"
    titled_dir = shop_home / "var" / "registry" / "reranker" / "v4" / "model"
    assert "title_weight" in json.loads((titled_dir / "shoprank.json").read_text())["prior"]

    # ... and compress: the command hands the job both files with their mappings.
    from ranker.compress import job

    seen: dict[str, Any] = {}

    def compress_models(*_: Any, **kwargs: Any) -> Any:
        seen.update(kwargs)
        raise ValueError("recorded")

    monkeypatch.setattr(job, "compress_models", compress_models)
    from ranker.cli import app

    result = CliRunner().invoke(app, ["compress", *judgments])
    assert result.exit_code == 2, result.output
    assert isinstance(seen["catalog"], CatalogFile)
    assert seen["catalog"].path == shop_home / "train.csv.gz"
    assert seen["catalog"].mapping.model_dump(mode="json") == manifest["catalog_mapping"]
    assert isinstance(seen["judgments"], JudgmentsFile)
    assert seen["judgments"].mapping.gain_base == 1

    # 5. Evaluate with the shop's gains, and write a rerank run.
    trained_dir = shop_home / "var" / "registry" / "reranker" / "v2" / "model"
    shoprank("eval", *judgments, "--folds", "0", "--out", "report", "--reranker", str(trained_dir))
    report = (shop_home / "report" / "report.md").read_text(encoding="utf-8")
    assert f"{len(QUERIES)} judged queries" in report
    assert "grade - 1" in report
    assert re.search(
        rf"against the catalog's words first \(\d+ of {len(QUERIES)} queries\)", report
    )
    # The trained reranker beside its prior alone, and their paired difference.
    assert "| hybrid + prior alone (served) |" in report
    assert (
        "| hybrid + rerank (served) | hybrid + prior alone (served) | rerank | ndcg@10 |" in report
    )
    formats = [flag for flag in judgments if flag != "--judgments" and flag != "train.csv.gz"]
    shoprank(
        "run",
        "--queries",
        "train.csv.gz",
        "--candidates",
        "train.csv.gz",
        "--out",
        "run.trec",
        *formats,
    )
    lines = (shop_home / "run.trec").read_text(encoding="utf-8").splitlines()
    assert len(lines) == JUDGED_PER_QUERY * len(QUERIES)
    assert {line.split()[0] for line in lines} == {derived_query_id(q) for q in QUERIES}


def test_a_bad_row_names_file_line_and_column(shop_home: Path) -> None:
    write_home_depot(shop_home)
    path = shop_home / "train.csv.gz"
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    lines[3] = lines[3].rsplit(",", 1)[0] + ",0.5"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    from ranker.cli import app

    result = CliRunner().invoke(app, ["eval", *HOME_DEPOT_JUDGMENTS, "--folds", "0"])

    assert result.exit_code == 2
    assert (
        f"error: {path}:4: gain '0.5' in column 'relevance' is not a finite, non-negative "
        "gain after subtracting --gain-base 1"
    ) in result.output
    assert "Traceback" not in result.output


def test_judgments_without_a_catalog_or_an_index_fail_clearly(shop_home: Path) -> None:
    write_crowdflower(shop_home)
    from ranker.cli import app

    result = CliRunner().invoke(app, ["train", *CROWDFLOWER_JUDGMENTS])

    assert result.exit_code == 2
    assert "judgments given without a catalog, and no index to take it from" in result.output
    assert "pass the shop's catalog with --catalog" in result.output


def test_a_shop_cross_validates_fine_tuning_its_bi_encoder(shop_home: Path) -> None:
    write_home_depot(shop_home)
    shoprank("index", *HOME_DEPOT_CATALOG)

    # Hard negatives from retrieval: a pooled shop's judgments hold few irrelevant products.
    trained = shoprank(
        "train",
        "--bi-encoder",
        *HOME_DEPOT_JUDGMENTS,
        "--unjudged-negatives",
        "2",
        "--epochs",
        "0.5",
        "--folds",
        str(len(QUERIES)),  # each fold trains on 3 queries and validates on 1
    )

    summary = json.loads(trained[trained.index("{") :])
    cv = summary["cross_validation"]
    assert cv["folds"] == len(QUERIES)
    assert cv["task"] == "rerank"
    assert len(cv["kept_steps"]) == len(QUERIES)
    assert cv["fine_tuned_over_zero_shot"]["queries"] == len(QUERIES)
    for arm in ("zero_shot", "fine_tuned"):
        low, high = cv[arm]["interval"]
        assert low <= cv[arm]["ndcg@10"] <= high
    model = shop_home / "var" / "registry" / "embedder" / summary["version"] / "model"
    manifest = json.loads((model / MANIFEST_NAME).read_text(encoding="utf-8"))
    assert manifest["cross_validation"] == cv

    # The gate reads the candidate's cross-validated figure. Production here is the packaged
    # MiniLM, not the tiny model the folds started from, so it gets no zero-shot figure
    # (tests/unit/ranker/test_bi_encoder_cv_gate.py has the case where it is the base).
    from ranker.promotion import gate_decision
    from ranker.serving_models import open_registry

    registry = open_registry(get_settings())
    candidate = registry.get("embedder", summary["version"])
    decision = gate_decision(candidate, registry.production("embedder"), get_settings().registry)
    assert decision.figures["candidate_ndcg@10"] == cv["fine_tuned"]["ndcg@10"]
    assert "production_figure_recorded" not in summary
    assert not decision.passed


def test_a_shop_trains_with_unjudged_negatives_tunes_fusion_and_reports_three_ways(
    shop_home: Path,
) -> None:
    write_home_depot(shop_home)
    shoprank("index", *HOME_DEPOT_CATALOG)

    # Weak negatives: 3 retrieved, unjudged products for each of the 5 queries.
    trained = shoprank(
        "train", *HOME_DEPOT_JUDGMENTS, "--epochs", "0.2", "--unjudged-negatives", "3"
    )
    summary = json.loads(trained[trained.index("{") :])
    assert summary["unjudged_negatives"] == 3 * len(QUERIES)
    # What the cross-encoder adds over its prior alone, on the held-out validation queries.
    over_prior = summary["cross_encoder_over_prior"]
    assert over_prior["queries"] == summary["validation_queries"] >= 1
    low, high = over_prior["interval"]
    assert low <= over_prior["ndcg@10"] <= high

    # Cross-validated: each fold's model beside its prior alone, and how many folds kept a
    # trained cross-encoder rather than their starting point (the prior alone).
    shoprank("eval", *HOME_DEPOT_JUDGMENTS, "--folds", "2", "--out", "cv-report")
    report = (shop_home / "cv-report" / "report.md").read_text(encoding="utf-8")
    assert re.search(
        r"2-fold CV by query, trained here; [012] of 2 folds kept a trained cross-encoder", report
    )
    assert "| hybrid + rerank | hybrid + prior alone | rerank | ndcg@10 |" in report

    # Fusion by 2-fold CV on the shop's queries, written where serving reads it.
    output = shoprank(
        "tune-fusion",
        *HOME_DEPOT_JUDGMENTS,
        "--folds",
        "2",
        "--rrf-k",
        "10,20",
        "--dense-weights",
        "0,0.5,1",
        "--rerank-depths",
        "5,10",
        "--out",
        "fusion-report",
    )
    assert "## Fusion" in output
    assert "## Rerank depth" in output
    assert "2-fold CV by query" in output
    tuned = json.loads((shop_home / "var" / "fusion.json").read_text())
    assert tuned["rrf_k"] in (10, 20)
    assert tuned["rerank_depth"] in (5, 10)
    assert tuned["tuning"]["queries"] == len(QUERIES)
    assert (shop_home / "fusion-report" / "report.md").is_file()
    from ranker.loading import open_serving_pipeline

    pipeline = open_serving_pipeline(get_settings(), with_reranker=False)
    assert pipeline.retrieval.rrf_k == tuned["rrf_k"]
    assert pipeline.retrieval.dense_weight == tuned["dense_weight"]
    assert pipeline.rerank_settings.depth == tuned["rerank_depth"]

    # Three ways, relevant from gain 1.33 (relevance 2.33) up, with bootstrap intervals.
    printed = shoprank(
        "eval", *HOME_DEPOT_JUDGMENTS, "--folds", "0", "--relevant-gain", "1.33", "--out", "r"
    )
    assert "retrieval condensed NDCG@10" in printed
    report = (shop_home / "r" / "report.md").read_text(encoding="utf-8")
    assert "count every gain of at least 1.33 as relevant" in report
    assert "condensed NDCG@10 drops them" in report
    bm25 = next(line for line in report.splitlines() if line.startswith("| BM25 |"))
    assert bm25.count("[") == 5  # rerank NDCG; retrieval NDCG, condensed, Recall@100, MRR
