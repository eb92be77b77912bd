"""The client: a job's status from its steps', and errors when Redis cannot be reached."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest
from pydantic import SecretStr

from ranker.settings import Settings, WorkerSettings
from workers.cli import parse_param
from workers.client import (
    BrokerUnavailableError,
    _combine,
    broker_label,
    job_status,
    list_jobs,
    submit_job,
)
from workers.records import JobRecord, Step

CHAIN = JobRecord(
    id="a",
    kind="retrain",
    params={},
    steps=[Step("finetune_reranker", "a"), Step("compress", "b"), Step("promote", "c")],
)


def _status(states: list[tuple[str, Any]]) -> dict[str, Any]:
    return _combine(CHAIN, states)


def test_a_chain_under_way_shows_its_step_and_progress() -> None:
    status = _status(
        [
            ("SUCCESS", {"candidate": {"version": "v2"}}),
            ("PROGRESS", {"step": "compress", "key": "k"}),
            ("PENDING", None),
        ]
    )
    assert status["state"] == "PROGRESS"
    assert status["progress"] == {"step": "compress", "step_index": 2, "steps": 3, "key": "k"}
    assert [step["state"] for step in status["steps"]] == ["SUCCESS", "PROGRESS", "PENDING"]


def test_a_queued_step_after_a_finished_one_counts_as_progress() -> None:
    status = _status([("SUCCESS", {}), ("PENDING", None), ("PENDING", None)])
    assert status["state"] == "PROGRESS"
    assert status["progress"]["step"] == "compress"


def test_the_first_failure_ends_the_chain_with_its_error() -> None:
    status = _status([("SUCCESS", {}), ("FAILURE", ValueError("bad judgments")), ("PENDING", None)])
    assert status["state"] == "FAILURE"
    assert status["error"] == "ValueError: bad judgments"
    assert status["progress"]["step"] == "compress"


def test_a_finished_chain_has_its_last_step_s_result() -> None:
    status = _status([("SUCCESS", {}), ("SUCCESS", {}), ("SUCCESS", {"promoted": True})])
    assert (status["state"], status["result"], status["error"]) == (
        "SUCCESS",
        {"promoted": True},
        None,
    )


def test_a_one_step_job_pending_has_no_progress() -> None:
    record = JobRecord(id="x", kind="index", params={}, steps=[Step("index", "x")])
    assert _combine(record, [("PENDING", None)])["progress"] is None
    assert _combine(record, [("SUCCESS", {"count": 3})])["progress"] is None


SHARDED = JobRecord(
    id="p",
    kind="index",
    params={"shards": 3},
    steps=[
        Step("index_plan", "p"),
        *(Step("index_shard", f"s{shard}", group="index_shard") for shard in range(3)),
        Step("index_commit", "c"),
    ],
)


def test_a_sharded_build_counts_its_shards_as_one_step() -> None:
    status = _combine(
        SHARDED,
        [
            ("SUCCESS", {"count": 9}),
            ("SUCCESS", {"shard": 0, "count": 3}),
            ("PROGRESS", {"step": "embed", "shard": 1}),
            ("PENDING", None),
            ("PENDING", None),
        ],
    )
    assert status["state"] == "PROGRESS"
    assert status["progress"] == {
        "step": "index_shard",
        "step_index": 2,
        "steps": 3,
        "done": 1,
        "of": 3,
        "running": 1,
    }
    assert len(status["steps"]) == 5


def test_a_failed_shard_fails_the_build_with_its_error() -> None:
    status = _combine(
        SHARDED,
        [
            ("SUCCESS", {}),
            ("SUCCESS", {}),
            ("FAILURE", OSError("disk full")),
            ("SUCCESS", {}),
            ("PENDING", None),
        ],
    )
    assert (status["state"], status["error"]) == ("FAILURE", "OSError: disk full")
    assert status["progress"]["step"] == "index_shard"


def test_a_committed_build_has_the_commit_s_result() -> None:
    done = [("SUCCESS", {})] * 4 + [("SUCCESS", {"count": 9})]
    status = _combine(SHARDED, done)
    assert (status["state"], status["result"]) == ("SUCCESS", {"count": 9})
    assert status["progress"]["step_index"] == 3


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def nowhere() -> Settings:
    url = f"redis://:hunter2@127.0.0.1:{_closed_port()}/0"
    return Settings(workers=WorkerSettings(broker_url=SecretStr(url)))


def test_an_unreachable_broker_fails_fast_without_its_password(nowhere: Settings) -> None:
    started = time.monotonic()
    with pytest.raises(BrokerUnavailableError, match="cannot be reached") as caught:
        submit_job(nowhere, "promote", {"version": "v2"})
    assert time.monotonic() - started < 10
    assert "hunter2" not in caught.value.message
    assert broker_label(nowhere) in caught.value.message
    with pytest.raises(BrokerUnavailableError):
        job_status(nowhere, "some-id")
    with pytest.raises(BrokerUnavailableError):
        list_jobs(nowhere)


def test_param_values_parse_as_json_else_stay_text() -> None:
    assert parse_param("folds=3") == ("folds", 3)
    assert parse_param('overrides={"epochs": 1}') == ("overrides", {"epochs": 1})
    assert parse_param("version=v3") == ("version", "v3")
    assert parse_param("force=true") == ("force", True)
    with pytest.raises(ValueError, match="name=value"):
        parse_param("v3")
