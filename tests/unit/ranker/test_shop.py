"""``ranker.shop`` and ``ranker.cli_shop``: a shop's files and mappings from flags, a TOML
file or job parameters; judgments in other shops' formats; which catalog a step uses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from indexer.catalog import CatalogFile, FieldMapping, load_products
from ranker.errors import InputError
from ranker.evaluation.judgment_files import JudgmentMapping, JudgmentsFile, derived_query_id
from ranker.evaluation.judgments import load_judgments
from ranker.settings import Settings
from ranker.shop import (
    ShopFiles,
    catalog_mapping,
    judgment_mapping,
    parse_assignments,
    parse_gains,
    read_mapping_file,
    resolve_catalog,
)
from workers.jobspec import RetrainParams, parse_params


def test_a_toml_mapping_with_flags_on_top(tmp_path: Path) -> None:
    path = tmp_path / "shop.toml"
    path.write_text(
        "[catalog]\n"
        'fields = { id = "product_uid", title = "name" }\n'
        'duplicates = "first"\n'
        'join = ["descriptions.csv"]\n'
        "[judgments]\n"
        'fields = { query = "search_term", gain = "relevance" }\n'
        "gain_base = 1\n",
        encoding="utf-8",
    )
    catalog, judgments = read_mapping_file(path)

    mapping = catalog_mapping(catalog, fields={"title": "product_title"}, attributes="")
    assert mapping.fields == {"id": "product_uid", "title": "product_title"}
    assert mapping.join == (str(tmp_path / "descriptions.csv"),)
    assert mapping.duplicates == "first"
    assert mapping.attributes == ()
    graded = judgment_mapping(judgments, gain_base=0.5)
    assert graded.fields == {"query": "search_term", "gain": "relevance"}
    assert graded.gain_base == 0.5


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: parse_assignments(["id"], option="--field"), "--field takes FIELD=COLUMN"),
        (lambda: parse_gains("E=1,S"), "--gains takes LABEL=GAIN"),
        (lambda: parse_gains("E=-1"), "--gains takes LABEL=GAIN"),
        (lambda: catalog_mapping({}, fields={"sku": "x"}), "unknown product field"),
        (lambda: judgment_mapping({}, fields={"label": "a", "gain": "b"}), "label or gain"),
    ],
)
def test_bad_mappings_are_input_errors(call: object, message: str) -> None:
    with pytest.raises(InputError, match=message):
        call()  # type: ignore[operator]


def test_jsonl_judgments_with_mapped_labels_and_derived_query_ids(tmp_path: Path) -> None:
    path = tmp_path / "judged.jsonl"
    rows = [
        {"q": "red lamp", "sku": 1, "grade": "great"},
        {"q": "red lamp", "sku": 2, "grade": "poor"},
        {"q": "desk", "sku": 1, "grade": "poor"},
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    mapping = JudgmentMapping(
        fields={"query": "q", "product_id": "sku", "label": "grade"},
        gains={"great": 1.0, "poor": 0.0},
    )

    judgments = load_judgments(JudgmentsFile(path, mapping))

    lamp, desk = derived_query_id("red lamp"), derived_query_id("desk")
    assert judgments.queries == {lamp: "red lamp", desk: "desk"}
    assert judgments.qrels == {lamp: {"1": 1.0, "2": 0.0}, desk: {"1": 0.0}}


def test_numeric_grades_take_the_base_and_keep_the_gain_as_label(tmp_path: Path) -> None:
    path = tmp_path / "judged.csv"
    path.write_text("search_term,uid,relevance\nbolt,7,2.5\nbolt,8,1\n", encoding="utf-8")
    mapping = JudgmentMapping(
        fields={"query": "search_term", "product_id": "uid", "gain": "relevance"}, gain_base=1
    )

    judgments = load_judgments(path, mapping=mapping)

    qid = derived_query_id("bolt")
    assert judgments.qrels == {qid: {"7": 1.5, "8": 0.0}}
    assert judgments.labels == {qid: {"7": "1.5", "8": "0"}}


def test_a_mapped_query_id_column_that_is_missing_is_named(tmp_path: Path) -> None:
    path = tmp_path / "judged.csv"
    path.write_text("query,product_id,gain\nbolt,7,1\n", encoding="utf-8")

    with pytest.raises(InputError, match=r"missing column\(s\) qid \(query_id\)"):
        load_judgments(path, mapping=JudgmentMapping(fields={"query_id": "qid"}))


def test_a_catalog_joins_descriptions_and_keeps_the_first_of_each_id(tmp_path: Path) -> None:
    rows = tmp_path / "train.csv"
    rows.write_text(
        "id,product_uid,product_title,search_term\n1,100,Bolt,bolt\n2,100,Bolt,nut\n"
        "3,101,Nut,nut\n",
        encoding="utf-8",
    )
    descriptions = tmp_path / "descriptions.csv"
    descriptions.write_text("product_uid,product_description\n101,A hex nut.\n", encoding="utf-8")
    mapping = FieldMapping(
        fields={"id": "product_uid"},
        attributes=(),
        duplicates="first",
        join=(str(descriptions),),
    )

    products = load_products(CatalogFile(rows, mapping))

    assert [(p.id, p.title, p.description, p.attributes) for p in products] == [
        ("100", "Bolt", "", {}),
        ("101", "Nut", "A hex nut.", {}),
    ]


def test_a_shop_s_files_travel_as_job_parameters(tmp_path: Path) -> None:
    shop = ShopFiles(
        catalog=CatalogFile(tmp_path / "train.csv", FieldMapping(fields={"id": "product_uid"})),
        judgments=JudgmentsFile(
            tmp_path / "train.csv", JudgmentMapping(fields={"gain": "relevance"}, gain_base=1)
        ),
    )

    spec = parse_params("retrain", {**shop.params(), "folds": 2})

    assert isinstance(spec, RetrainParams)
    assert spec.catalog_mapping == {"fields": {"id": "product_uid"}}
    assert spec.judgment_mapping == {"fields": {"gain": "relevance"}, "gain_base": 1.0}


def test_judgments_without_a_catalog_use_the_index_s(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    catalog = tmp_path / "train.csv"
    catalog.write_text("product_uid\n1\n", encoding="utf-8")
    settings.index_path.mkdir(parents=True)
    manifest = {"source": str(catalog), "catalog_mapping": {"fields": {"id": "product_uid"}}}
    (settings.index_path / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")

    found = resolve_catalog(settings, None, judgments_given=True)

    assert found == CatalogFile(catalog, FieldMapping(fields={"id": "product_uid"}))
    assert resolve_catalog(settings, None, judgments_given=False) is None
    catalog.unlink()
    with pytest.raises(InputError, match="is not a file here; pass the shop's catalog"):
        resolve_catalog(settings, None, judgments_given=True)
