"""The indexing bench's arithmetic and table (no timing, no node)."""

from __future__ import annotations

import pytest

from bench.index import (
    BASELINE,
    EMBED_ONLY,
    EMBEDDED,
    EMBEDDED_STORED,
    OPENSEARCH,
    OPENSEARCH_COPY,
    Pass,
    render,
    rows_from_passes,
)

PASSES = [
    Pass(EMBED_ONLY, 10.0, embeds=True),
    Pass(EMBEDDED, 12.5, embeds=True),
    Pass(EMBEDDED_STORED, 0.5, embeds=False),
    Pass(OPENSEARCH, 20.0, embeds=True),
    Pass(OPENSEARCH_COPY, 5.0, embeds=False),
]


def test_rows_have_docs_per_second_and_speed_up_against_the_embedded_build() -> None:
    rows = {row["variant"]: row for row in rows_from_passes(PASSES, docs=100)}

    assert rows[EMBEDDED]["docs_per_s"] == pytest.approx(8.0)
    assert rows[BASELINE]["speedup"] == pytest.approx(1.0)
    assert rows[OPENSEARCH]["speedup"] == pytest.approx(12.5 / 20.0)
    assert rows[OPENSEARCH_COPY]["speedup"] == pytest.approx(12.5 / 5.0)


def test_embedding_share_is_what_the_stored_vector_pass_did_not_need() -> None:
    rows = {row["variant"]: row for row in rows_from_passes(PASSES, docs=100)}

    assert rows[EMBED_ONLY]["embedding_share"] == 1.0
    assert rows[EMBEDDED]["embedding_share"] == pytest.approx(1 - 0.5 / 12.5)
    assert rows[OPENSEARCH]["embedding_share"] == pytest.approx(0.75)
    assert rows[OPENSEARCH]["embedding"] == "75 %"
    assert rows[OPENSEARCH_COPY]["embedding_share"] is None


def test_a_faster_pass_without_embedding_never_gives_a_negative_share() -> None:
    passes = [Pass(EMBEDDED, 1.0, embeds=True), Pass(EMBEDDED_STORED, 2.0, embeds=False)]

    (row, _) = rows_from_passes(passes, docs=10)

    assert row["embedding_share"] == 0.0


def test_the_baseline_and_a_positive_count_are_required() -> None:
    with pytest.raises(ValueError, match="baseline"):
        rows_from_passes([Pass(OPENSEARCH, 1.0, embeds=True)], docs=10)
    with pytest.raises(ValueError, match="positive"):
        rows_from_passes(PASSES, docs=0)


def test_render_shows_every_pass_with_its_ratio() -> None:
    result = {
        "docs": 100,
        "embedder": "tiny (torch)",
        "opensearch": "dev node (PID 1)",
        "rows": rows_from_passes(PASSES, docs=100),
    }

    text = render(result)

    assert text.splitlines()[0].startswith("indexing: 100 products")
    for p in PASSES:
        assert p.variant in text
    assert "1.00x (baseline)" in text
    assert "2.50x" in text
