"""The Celery app's configuration comes from settings; building it loads no model."""

from __future__ import annotations

import subprocess
import sys

from pydantic import SecretStr

from ranker.settings import Settings, WorkerSettings
from workers.app import make_app, restore_interval_s, task_options
from workers.errors import TransientJobError


def _settings(**workers: object) -> Settings:
    return Settings(workers=WorkerSettings(**workers))  # type: ignore[arg-type]


def test_redis_json_late_acks_and_limits_from_settings() -> None:
    settings = _settings(
        broker_url=SecretStr("redis://:secret@redis.internal:6380/2"),
        soft_time_limit_s=100,
        time_limit_s=120,
        visibility_timeout_s=8,
        compress_every_s=0,
    )
    conf = make_app(settings).conf

    assert conf.broker_url == "redis://:secret@redis.internal:6380/2"
    assert conf.result_backend == conf.broker_url
    assert conf.task_serializer == conf.result_serializer == "json"
    assert conf.accept_content == ["json"]
    assert conf.task_acks_late
    assert conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert (conf.task_soft_time_limit, conf.task_time_limit) == (100, 120)
    assert conf.broker_transport_options["visibility_timeout"] == 8
    assert conf.broker_transport_options["unacked_restore_interval"] == 2
    assert conf.beat_schedule == {}


def test_beat_checks_compression_on_the_configured_period() -> None:
    schedule = make_app(_settings(compress_every_s=600)).conf.beat_schedule
    assert schedule["maybe-compress"]["task"] == "shoprank.maybe_compress"
    assert schedule["maybe-compress"]["schedule"] == 600
    assert schedule["maybe-compress"]["options"]["expires"] == 600


def test_tasks_retry_transient_errors_with_jittered_backoff() -> None:
    options = task_options(_settings(max_retries=5, retry_backoff_max_s=30))
    assert options["autoretry_for"] == (TransientJobError,)
    assert options["max_retries"] == 5
    assert options["retry_backoff"] is True
    assert options["retry_jitter"] is True
    assert options["retry_backoff_max"] == 30


def test_a_lost_task_is_looked_for_soon_after_its_visibility_timeout() -> None:
    assert restore_interval_s(4) == 1
    assert restore_interval_s(40) == 10
    assert restore_interval_s(5 * 3600) == 60


def test_importing_the_app_loads_no_model_library() -> None:
    code = (
        "import sys, workers.app, workers.client; "
        "print(sorted(m for m in ('torch', 'transformers', 'onnxruntime') if m in sys.modules))"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert found.stdout.strip() == "[]"
