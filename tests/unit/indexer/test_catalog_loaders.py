"""Catalog loaders: JSONL / CSV / Parquet (gzipped too), field mappings, values, errors."""

from __future__ import annotations

import csv
import gzip
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

from indexer.catalog import (
    CatalogError,
    FieldMapping,
    Product,
    iter_products,
    load_products,
    product_from_record,
    sample_catalog_path,
    sample_judgments_path,
)

# Two records shaped like the ESCI product file (see indexer/sample_data/products.jsonl.gz).
ESCI_RECORDS: list[dict[str, Any]] = [
    {
        "asin": "B07CXG6C9W",
        "title": "Kindle Paperwhite",
        "description": "",
        "bullet_points": "Thin and light\nNow waterproof\n\n  8 GB  ",
        "brand": "Amazon",
        "color": "Black",
        "price": None,
        "category": ["Electronics", "Kindle E-readers"],
        "rating": 4.6,
        "is_book": False,
        "query_id": ["67", "58186"],
    },
    {
        "asin": "B0777K9RGX",
        "title": "Memory Foam Mattress, Queen",
        "description": "A 12 inch mattress.",
        "bullet_points": "",
        "brand": "Signature Design by Ashley",
        "color": "White",
        "price": 299.99,
        "category": [],
        "rating": 4.5,
        "is_book": False,
        "query_id": ["67"],
    },
]

ESCI_PRODUCTS = [
    Product(
        id="B07CXG6C9W",
        title="Kindle Paperwhite",
        bullet_points=("Thin and light", "Now waterproof", "8 GB"),
        brand="Amazon",
        color="Black",
        category=("Electronics", "Kindle E-readers"),
        attributes={"rating": 4.6, "is_book": False},
    ),
    Product(
        id="B0777K9RGX",
        title="Memory Foam Mattress, Queen",
        description="A 12 inch mattress.",
        brand="Signature Design by Ashley",
        color="White",
        price=299.99,
        attributes={"rating": 4.5, "is_book": False},
    ),
]

# Home-Depot-like columns: none of their names is one of the defaults for title/description.
HOME_DEPOT_COLUMNS = ("product_uid", "product_title", "product_description", "taxonomy", "price")
HOME_DEPOT_ROWS = [
    (
        "100001",
        "Simpson Strong-Tie 12-Gauge Angle",
        "Not only do angles make joints stronger",
        "Building Materials > Hardware > Angles",
        "$1,299.00",
    ),
    (
        "100002",
        "BEHR Premium Textured DeckOver",
        "BEHR Premium Textured DECKOVER is an",
        "Paint > Exterior Paint",
        "",
    ),
]
HOME_DEPOT_MAPPING = FieldMapping(
    fields={"id": "product_uid", "title": "product_title", "category": "taxonomy"},
)


def write_jsonl(path: Path, records: Iterable[Mapping[str, Any] | str]) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    text = "".join(line + "\n" for line in lines)
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def write_csv(path: Path, header: Iterable[str], rows: Iterable[Iterable[Any]]) -> Path:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def where(path: Path, line: int) -> str:
    """A regex for the start of an error message about ``path`` at ``line``."""
    return "^" + re.escape(f"{path}:{line}: ")


# ------------------------------------------------------------------ formats


@pytest.mark.parametrize("name", ["catalog.jsonl", "catalog.jsonl.gz", "catalog.ndjson"])
def test_jsonl_loads_esci_fields_out_of_the_box(tmp_path: Path, name: str) -> None:
    path = write_jsonl(tmp_path / name, ESCI_RECORDS)

    assert load_products(path) == ESCI_PRODUCTS


def test_jsonl_skips_blank_lines(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "c.jsonl", ["", json.dumps(ESCI_RECORDS[0]), "   "])

    assert [p.id for p in load_products(path)] == ["B07CXG6C9W"]


def test_iter_products_streams_in_file_order(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "c.jsonl", ESCI_RECORDS)

    assert [p.id for p in iter_products(path)] == ["B07CXG6C9W", "B0777K9RGX"]


@pytest.mark.parametrize("name", ["catalog.csv", "catalog.csv.gz"])
def test_csv_with_a_field_mapping(tmp_path: Path, name: str) -> None:
    path = write_csv(tmp_path / name, HOME_DEPOT_COLUMNS, HOME_DEPOT_ROWS)

    products = load_products(path, HOME_DEPOT_MAPPING)

    assert products == [
        Product(
            id="100001",
            title="Simpson Strong-Tie 12-Gauge Angle",
            description="Not only do angles make joints stronger",
            category=("Building Materials", "Hardware", "Angles"),
            price=1299.0,
        ),
        Product(
            id="100002",
            title="BEHR Premium Textured DeckOver",
            description="BEHR Premium Textured DECKOVER is an",
            category=("Paint", "Exterior Paint"),
        ),
    ]


def test_csv_default_names_cover_home_depot_ids_and_descriptions(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "c.csv",
        ["product_uid", "product_title", "product_description"],
        [["100001", "Angle", "Makes joints stronger"]],
    )

    assert load_products(path) == [
        Product(id="100001", title="Angle", description="Makes joints stronger")
    ]


def test_csv_bullet_points_split_on_newlines_inside_quoted_cells(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "c.csv", ["asin", "bullet_points"], [["B1", "one\ntwo\n"]])

    assert load_products(path)[0].bullet_points == ("one", "two")


def test_csv_with_a_byte_order_mark(tmp_path: Path) -> None:
    # Spreadsheet exports often start with a UTF-8 BOM; it must not hide the first column.
    path = tmp_path / "c.csv"
    path.write_bytes("\ufeffasin,title\nB1,Mug\n".encode())

    assert load_products(path) == [Product(id="B1", title="Mug")]


def test_parquet(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table(
        {
            "asin": ["B1", "B2", "B3"],
            "title": ["Mug", "Kettle", None],
            "category": [["Home", "Kitchen"], [], None],
            "price": [4.5, None, float("nan")],
            "stock": [3, 0, None],
        }
    )
    path = tmp_path / "catalog.parquet"
    pq.write_table(table, path)

    assert load_products(path) == [
        Product(
            id="B1", title="Mug", category=("Home", "Kitchen"), price=4.5, attributes={"stock": 3}
        ),
        Product(id="B2", title="Kettle", attributes={"stock": 0}),
        Product(id="B3"),
    ]


def test_parquet_integer_ids_become_text(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "catalog.parquet"
    pq.write_table(pa.table({"product_uid": [100001, 100002], "name": ["a", "b"]}), path)

    assert [(p.id, p.title) for p in load_products(path)] == [("100001", "a"), ("100002", "b")]


def test_extensions_are_case_insensitive(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "x.jsonl.gz", ESCI_RECORDS)
    upper = path.rename(tmp_path / "CATALOG.JSONL.GZ")

    assert load_products(upper) == ESCI_PRODUCTS


# ------------------------------------------------------------------ mapping and values


def test_mapping_overrides_only_the_fields_it_names() -> None:
    record = {"sku": "S1", "title": "Default title", "headline": "Mapped title", "brand": "Acme"}
    mapping = FieldMapping(fields={"id": "sku", "title": "headline"})

    product = product_from_record(record, mapping)

    assert (product.id, product.title, product.brand) == ("S1", "Mapped title", "Acme")
    # The unused default column stays, as an attribute.
    assert product.attributes == {"title": "Default title"}


def test_mapping_with_a_custom_category_separator() -> None:
    mapping = FieldMapping(category_separator="/")

    product = product_from_record({"id": "1", "category": "Home/ Kitchen /"}, mapping)

    assert product.category == ("Home", "Kitchen")


def test_mapping_refuses_unknown_fields() -> None:
    with pytest.raises(ValueError, match=r"unknown product field\(s\) \['sku'\]"):
        FieldMapping(fields={"sku": "product_uid"})


def test_mapping_refuses_unknown_options() -> None:
    with pytest.raises(ValueError, match="Extra inputs"):
        FieldMapping(columns={"id": "sku"})  # type: ignore[call-arg]


def test_mapping_attributes_lists_the_columns_kept() -> None:
    record = {"id": "1", "rating": 4.5, "image": "http://x/y.jpg", "stock": 2}

    product = product_from_record(record, FieldMapping(attributes=("rating", "missing")))

    assert product.attributes == {"rating": 4.5}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("$1,299.00", 1299.0),
        (" 12.50 ", 12.5),
        ("$", None),
        ("", None),
        (None, None),
        (float("nan"), None),
        (7, 7.0),
        (0, 0.0),
    ],
)
def test_price_values(raw: Any, expected: float | None) -> None:
    assert product_from_record({"id": "1", "price": raw}).price == expected


@pytest.mark.parametrize("raw", ["about ten", "-3.00"])
def test_bad_prices_are_refused(raw: str) -> None:
    with pytest.raises(CatalogError):
        product_from_record({"id": "1", "price": raw})


def test_attributes_keep_unmapped_scalar_columns_only() -> None:
    record = {
        "asin": "B1",
        "_id": "B1",
        "rating": 4.5,
        "rating_count": 120,
        "is_book": True,
        "image": "https://example.com/1.jpg",
        "empty": "",
        "missing": None,
        "not_a_number": float("nan"),
        "query_id": ["1", "2"],
        "dims": {"w": 1},
    }

    assert product_from_record(record).attributes == {
        "_id": "B1",
        "rating": 4.5,
        "rating_count": 120,
        "is_book": True,
        "image": "https://example.com/1.jpg",
    }


def test_text_fields_are_stripped_and_integer_ids_become_text() -> None:
    product = product_from_record({"id": 42, "title": "  Mug  ", "brand": 3})

    assert (product.id, product.title, product.brand) == ("42", "Mug", "3")


def test_category_given_as_a_list_drops_empty_levels() -> None:
    product = product_from_record({"id": "1", "category": ["Home", " ", "", "Kitchen "]})

    assert product.category == ("Home", "Kitchen")


# ------------------------------------------------------------------ errors


def test_invalid_json_names_file_and_line(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "c.jsonl", [ESCI_RECORDS[0], '{"asin": "B2",'])

    with pytest.raises(CatalogError, match=where(path, 2) + r"invalid JSON"):
        load_products(path)


def test_invalid_json_in_a_gzipped_file_names_file_and_line(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "c.jsonl.gz", ["", "not json"])

    with pytest.raises(CatalogError, match=where(path, 2) + r"invalid JSON"):
        load_products(path)


@pytest.mark.parametrize("line", ['["B1", "Mug"]', '"B1"', "3", "null"])
def test_json_that_is_not_an_object_names_file_and_line(tmp_path: Path, line: str) -> None:
    path = write_jsonl(tmp_path / "c.jsonl", [ESCI_RECORDS[0], line])

    with pytest.raises(CatalogError, match=where(path, 2) + r"expected a JSON object"):
        load_products(path)


@pytest.mark.parametrize("record", [{"title": "no id"}, {"asin": "", "title": "empty id"}])
def test_missing_id_names_file_and_line(tmp_path: Path, record: dict[str, Any]) -> None:
    path = write_jsonl(tmp_path / "c.jsonl", [ESCI_RECORDS[0], ESCI_RECORDS[1], record])

    with pytest.raises(CatalogError, match=where(path, 3) + r"record has no product id"):
        load_products(path)


def test_missing_id_names_the_mapped_column(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "c.csv", ["sku", "title"], [["", "Mug"]])

    with pytest.raises(
        CatalogError,
        match=where(path, 2) + r"record has no product id \(looked for: sku\)",
    ):
        load_products(path, FieldMapping(fields={"id": "sku"}))


def test_bad_value_names_file_line_and_column(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "c.csv", ["asin", "cost"], [["B1", "1.00"], ["B2", "n/a"]])

    with pytest.raises(CatalogError, match=where(path, 3) + r"field 'price' \(column 'cost'\)"):
        load_products(path, FieldMapping(fields={"price": "cost"}))


def test_duplicate_ids_name_file_and_line(tmp_path: Path) -> None:
    records = [ESCI_RECORDS[0], ESCI_RECORDS[1], {**ESCI_RECORDS[0], "title": "again"}]
    path = write_jsonl(tmp_path / "c.jsonl", records)

    with pytest.raises(CatalogError, match=r"duplicate product id 'B07CXG6C9W'") as raised:
        load_products(path)

    assert str(raised.value) == (
        f"{path}:3: duplicate product id 'B07CXG6C9W' (first seen at {path}:1); a file with "
        'one row per judgment needs duplicates = "first" (--catalog-duplicates first)'
    )


def test_iter_products_does_not_check_duplicates(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "c.jsonl", [ESCI_RECORDS[0], ESCI_RECORDS[0]])

    assert len(list(iter_products(path))) == 2


@pytest.mark.parametrize("name", ["catalog.txt", "catalog.xlsx", "catalog.gz", "catalog"])
def test_unknown_extension(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("asin\nB1\n", encoding="utf-8")

    with pytest.raises(CatalogError, match="unknown catalog format"):
        load_products(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="no such catalog file"):
        load_products(tmp_path / "absent.jsonl")


def test_a_directory_is_not_a_catalog_file(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="no such catalog file"):
        load_products(tmp_path)


# ------------------------------------------------------------------ the shipped sample


def test_sample_catalog_loads_and_covers_every_judged_product() -> None:
    products = load_products(sample_catalog_path())

    assert len(products) == 6764
    ids = {product.id for product in products}
    assert len(ids) == len(products)
    with sample_judgments_path().open(encoding="utf-8", newline="") as handle:
        judged = {row["product_id"] for row in csv.DictReader(handle)}
    assert judged
    assert judged <= ids, sorted(judged - ids)[:10]
    assert all(product.title for product in products)
