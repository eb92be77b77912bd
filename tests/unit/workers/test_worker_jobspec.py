"""Job kinds and their parameters are checked where a job is submitted."""

from __future__ import annotations

from pathlib import Path

import pytest

from workers.client import _stages
from workers.errors import UnknownJobKindError
from workers.jobspec import KINDS, CompressParams, RetrainParams, parse_params, task_name


def test_every_kind_the_contract_names_is_known() -> None:
    assert {"index", "retrain", "compress", "evaluate", "promote", "finetune_embedder"} <= set(
        KINDS
    )
    assert task_name("compress") == "shoprank.compress"


def test_an_unknown_kind_is_refused_with_the_choices() -> None:
    with pytest.raises(UnknownJobKindError, match="unknown job kind 'reindex'; choose one of"):
        parse_params("reindex", {})


@pytest.mark.parametrize(
    ("kind", "params", "problem"),
    [
        ("promote", {"verison": "v3"}, "verison: Extra inputs are not permitted"),
        ("evaluate", {"role": "ranker"}, "role: Input should be 'embedder' or 'reranker'"),
        ("finetune_reranker", {"folds": -1}, "folds: Input should be greater than or equal"),
        ("finetune_embedder", {"folds": -1}, "folds: Input should be greater than or equal"),
    ],
)
def test_bad_parameters_are_refused_naming_the_parameter(
    kind: str, params: dict[str, object], problem: str
) -> None:
    with pytest.raises(UnknownJobKindError, match=f"bad parameters for {kind}: {problem}"):
        parse_params(kind, params)


def test_relative_paths_become_absolute_where_the_job_is_submitted() -> None:
    spec = parse_params("compress", {"judgments": "shop/j.csv", "config": {"layers": [1]}})
    assert isinstance(spec, CompressParams)
    assert spec.judgments == str(Path.cwd() / "shop" / "j.csv")
    assert spec.catalog is None
    assert spec.model_dump(mode="json")["config"] == {"layers": [1]}


def test_retrain_is_a_chain_of_four_steps_passing_the_data_along() -> None:
    spec = parse_params(
        "retrain", {"judgments": "/data/j.csv", "overrides": {"epochs": 1}, "folds": 2}
    )
    assert isinstance(spec, RetrainParams)
    stages = _stages("retrain", spec)
    assert all(len(stage) == 1 for stage in stages)
    steps = [stage[0] for stage in stages]

    assert [name for name, _ in steps] == ["finetune_reranker", "compress", "evaluate", "promote"]
    finetune, compress, evaluate, promote = (kwargs for _, kwargs in steps)
    assert finetune == {
        "judgments": "/data/j.csv",
        "catalog": None,
        "overrides": {"epochs": 1},
        "folds": 2,
    }
    assert compress["promote"] is False  # the chain's own promote step runs the gate
    assert compress["judgments"] == evaluate["judgments"] == "/data/j.csv"
    assert "version" not in evaluate
    assert "version" not in promote
    assert promote["actor"] == "retrain"


def test_a_one_step_job_sends_every_parameter() -> None:
    spec = parse_params("promote", {"version": "v3"})
    assert _stages("promote", spec) == [
        [("promote", {"role": "reranker", "version": "v3", "force": False, "actor": "worker"})]
    ]


def test_a_sharded_build_is_a_plan_then_one_task_per_shard_then_the_commit() -> None:
    spec = parse_params("index", {"catalog": "/shop/products.jsonl", "shards": 3})
    plan, shards, commit = _stages("index", spec)

    assert plan == [
        ("index_plan", {"catalog": "/shop/products.jsonl", "shards": 3, "backend": None})
    ]
    assert shards == [("index_shard", {"shard": shard}) for shard in range(3)]
    assert commit == [("index_commit", {"backend": None})]


def test_one_shard_is_the_plain_index_task() -> None:
    assert [name for ((name, _),) in _stages("index", parse_params("index", {}))] == ["index"]


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"shards": 2, "upsert": True}, "shards apply to a full build"),
        ({"shards": 2, "for_embedder": "v3"}, "shards apply to a full build"),
        ({"shards": 0}, "shards: Input should be greater than or equal to 1"),
        ({"shards": 5000}, "shards: Input should be less than or equal to 1024"),
    ],
)
def test_shards_only_for_a_full_build_within_bounds(
    params: dict[str, object], problem: str
) -> None:
    with pytest.raises(UnknownJobKindError, match=problem):
        parse_params("index", params)
