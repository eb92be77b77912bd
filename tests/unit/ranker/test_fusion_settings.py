"""The shop's tuned fusion file: written atomically, applied where nothing explicit wins."""

from __future__ import annotations

from pathlib import Path

import pytest

from ranker.errors import InputError
from ranker.fusion_settings import (
    TunedFusion,
    fusion_file,
    read_tuned_fusion,
    with_tuned_fusion,
    write_tuned_fusion,
)
from ranker.settings import RerankSettings, RetrievalSettings, Settings

TUNED = TunedFusion(
    rrf_k=20, dense_weight=0.5, lexical_weight=1.0, rerank_depth=30, tuning={"folds": 5}
)


def test_the_file_sits_in_the_home_unless_the_settings_name_another(tmp_path: Path) -> None:
    assert fusion_file(Settings(home=tmp_path)) == tmp_path / "fusion.json"
    other = tmp_path / "shop" / "f.json"
    settings = Settings(home=tmp_path, retrieval=RetrievalSettings(tuned_file=other))
    assert fusion_file(settings) == other


def test_written_settings_read_back(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "fusion.json"
    write_tuned_fusion(TUNED, path)
    assert read_tuned_fusion(path) == TUNED
    assert [p.name for p in path.parent.iterdir()] == ["fusion.json"]  # no temp file left


def test_no_file_leaves_the_settings_as_they_are(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    assert read_tuned_fusion(tmp_path / "fusion.json") is None
    assert with_tuned_fusion(settings) is settings


def test_tuned_values_apply(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    write_tuned_fusion(TUNED, fusion_file(settings))
    applied = with_tuned_fusion(settings)
    assert (applied.retrieval.rrf_k, applied.retrieval.dense_weight) == (20, 0.5)
    assert applied.retrieval.lexical_weight == 1.0
    assert applied.rerank.depth == 30
    assert settings.retrieval.rrf_k == 60  # the given settings are not changed


def test_explicit_settings_win_over_the_file(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path,
        retrieval=RetrievalSettings(rrf_k=7),
        rerank=RerankSettings(depth=12),
    )
    write_tuned_fusion(TUNED, fusion_file(settings))
    applied = with_tuned_fusion(settings)
    assert applied.retrieval.rrf_k == 7
    assert applied.retrieval.dense_weight == 0.5
    assert applied.rerank.depth == 12


def test_a_depth_above_the_api_limit_is_capped(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    deep = TUNED.model_copy(update={"rerank_depth": settings.api.max_documents + 50})
    write_tuned_fusion(deep, fusion_file(settings))
    assert with_tuned_fusion(settings).rerank.depth == settings.api.max_documents


def test_an_untuned_depth_keeps_the_settings_depth(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    write_tuned_fusion(TUNED.model_copy(update={"rerank_depth": None}), fusion_file(settings))
    assert with_tuned_fusion(settings).rerank.depth == settings.rerank.depth


@pytest.mark.parametrize(
    "text", ["not json", '{"rrf_k": -1, "dense_weight": 1, "lexical_weight": 1}']
)
def test_a_broken_file_is_an_input_error_naming_it(tmp_path: Path, text: str) -> None:
    path = tmp_path / "fusion.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=r"fusion\.json"):
        with_tuned_fusion(Settings(home=tmp_path))
