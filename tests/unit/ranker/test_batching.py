"""The Scheduler with a fake ``infer`` stage: token budgets, batching, dropping, shedding,
deadlines, failures, stopping. No weights; no wall-clock thresholds beyond generous ones."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Sequence

import numpy as np
import pytest

from ranker.backends.base import FloatArray
from ranker.batching import (
    DeadlineExceededError,
    InferenceFailedError,
    Scheduler,
    SchedulerConfig,
    SchedulerOverloadedError,
    SchedulerStoppedError,
)
from ranker.stages import PreparedTokens

WAIT_S = 10.0


def tokens(marker: int, *, rows: int = 1, longest: int = 4) -> PreparedTokens:
    """``rows`` rows, the first ``longest`` long and the rest shorter; every id is
    ``marker``, so an output can say whose input it was."""
    lengths = [longest] + [max(1, longest - 1 - i) for i in range(rows - 1)]
    ids = tuple(np.full(length, marker, dtype=np.int64) for length in lengths)
    return PreparedTokens(ids=ids, type_ids=ids, pad_id=0)


class FakeModel:
    """Answers each row with its input's marker; records every batch; can be held."""

    def __init__(self, *, fail_on: int | None = None, delay_s: float = 0.0) -> None:
        self.batches: list[list[PreparedTokens]] = []
        self.hold = threading.Event()
        self.hold.set()
        self.started = threading.Event()
        self.fail_on = fail_on
        self.delay_s = delay_s

    def infer(self, inputs: Sequence[PreparedTokens]) -> list[FloatArray]:
        self.batches.append(list(inputs))
        self.started.set()
        self.hold.wait(WAIT_S)
        time.sleep(self.delay_s)
        if self.fail_on is not None and any(_marker(i) == self.fail_on for i in inputs):
            raise RuntimeError("the backend broke")
        return [np.full(i.rows, float(_marker(i)), dtype=np.float32) for i in inputs]

    def markers(self) -> list[list[int]]:
        return [[_marker(i) for i in batch] for batch in self.batches]


def _marker(prepared: PreparedTokens) -> int:
    return int(prepared.ids[0][0])


def config(**overrides: float) -> SchedulerConfig:
    values = {"max_batch_tokens": 64, "max_queue_tokens": 10_000, "max_queue_wait_s": 60.0}
    return SchedulerConfig(**{**values, **overrides})  # type: ignore[arg-type]


@pytest.fixture
def model() -> FakeModel:
    return FakeModel()


@pytest.fixture
def stopping() -> Iterator[list[Scheduler]]:
    """Schedulers to stop after the test."""
    made: list[Scheduler] = []
    yield made
    for scheduler in made:
        scheduler.stop(drain=False)
        scheduler.join(WAIT_S)


def scheduler(model: FakeModel, stopping: list[Scheduler], **overrides: float) -> Scheduler:
    made = Scheduler(model.infer, name="fake", config=config(**overrides))
    stopping.append(made)
    return made


def test_batches_keep_to_the_token_budget_padding_counted(
    model: FakeModel, stopping: list[Scheduler]
) -> None:
    queue = scheduler(model, stopping, max_batch_tokens=32)
    shapes = [(2, 8), (1, 8), (4, 4), (4, 4), (1, 40), (3, 2), (1, 8)]
    futures = [
        queue.enqueue(tokens(i, rows=rows, longest=longest))
        for i, (rows, longest) in enumerate(shapes)
    ]

    queue.start()
    outputs = [future.result(WAIT_S).output for future in futures]

    for batch in model.batches:
        padded = sum(i.rows for i in batch) * max(i.longest for i in batch)
        assert padded <= 32 or len(batch) == 1  # one longer request runs alone
    # In arrival order: (2x8)+(1x8) = 24; adding 4x4 would be 7 rows x 8 = 56 > 32.
    assert model.markers() == [[0, 1], [2, 3], [4], [5, 6]]
    assert [float(o[0]) for o in outputs] == [float(i) for i in range(len(shapes))]


def test_concurrent_requests_share_a_batch_and_each_gets_its_own_rows(
    model: FakeModel, stopping: list[Scheduler]
) -> None:
    queue = scheduler(model, stopping, max_batch_tokens=1_000).start()
    model.hold.clear()

    async def requests() -> list[FloatArray]:
        first = asyncio.ensure_future(queue.submit(tokens(100)))
        await asyncio.to_thread(model.started.wait, WAIT_S)  # the model runs request 100
        rest = [asyncio.ensure_future(queue.submit(tokens(i, rows=i))) for i in range(1, 9)]
        while queue.queued_tokens < sum(tokens(i, rows=i).padded_tokens for i in range(1, 9)):
            await asyncio.sleep(0.001)
        model.hold.set()
        done = await asyncio.gather(first, *rest)
        return [inferred.output for inferred in done]

    outputs = asyncio.run(requests())

    assert model.markers() == [[100], list(range(1, 9))]
    for i, output in enumerate(outputs[1:], start=1):
        np.testing.assert_array_equal(output, np.full(i, float(i), dtype=np.float32))


def test_a_cancelled_request_is_dropped_before_inference(
    model: FakeModel, stopping: list[Scheduler]
) -> None:
    queue = scheduler(model, stopping)
    kept = queue.enqueue(tokens(1))
    gone = queue.enqueue(tokens(2))
    assert gone.cancel()

    queue.start()

    assert kept.result(WAIT_S).output[0] == 1.0
    assert model.markers() == [[1]]
    assert queue.queued_tokens == 0


def test_a_full_queue_refuses_at_once_with_a_retry_after(
    model: FakeModel, stopping: list[Scheduler]
) -> None:
    queue = scheduler(model, stopping, max_queue_tokens=10)
    first = queue.enqueue(tokens(1, rows=2, longest=4))  # 8 padded tokens; alone: taken

    start = time.perf_counter()
    with pytest.raises(SchedulerOverloadedError) as refused:
        queue.enqueue(tokens(2, rows=1, longest=4))
    elapsed = time.perf_counter() - start

    assert refused.value.retry_after_s >= 1
    assert "8 tokens queued" in refused.value.message
    assert elapsed < 1.0  # refused before queueing, not after waiting
    queue.start()
    assert first.result(WAIT_S).output[0] == 1.0
    assert model.markers() == [[1]]


def test_a_long_estimated_wait_refuses_new_requests(stopping: list[Scheduler]) -> None:
    slow = FakeModel(delay_s=0.02)  # 100 padded tokens in >= 20 ms: <= 5000 tokens/s
    queue = scheduler(slow, stopping, max_batch_tokens=100, max_queue_wait_s=0.15).start()
    queue.enqueue(tokens(1, rows=25, longest=4)).result(WAIT_S)
    assert queue.tokens_per_s is not None
    assert queue.tokens_per_s <= 5_000
    slow.hold.clear()
    slow.started.clear()
    queue.enqueue(tokens(2, rows=25, longest=4))
    assert slow.started.wait(WAIT_S)
    queue.enqueue(tokens(3, rows=500, longest=4))  # 2000 tokens more: >= 0.4 s ahead

    with pytest.raises(SchedulerOverloadedError) as refused:
        queue.admit()

    assert "of work queued" in refused.value.message
    assert refused.value.retry_after_s >= 1
    slow.hold.set()


def test_a_request_past_its_deadline_is_dropped_and_told_so(
    model: FakeModel, stopping: list[Scheduler]
) -> None:
    queue = scheduler(model, stopping, max_batch_tokens=4).start()
    model.hold.clear()
    queue.enqueue(tokens(1))
    assert model.started.wait(WAIT_S)

    async def late() -> None:
        await queue.submit(tokens(2), deadline=time.monotonic() + 0.05)

    with pytest.raises(DeadlineExceededError):
        asyncio.run(late())
    model.hold.set()
    queue.stop()
    assert queue.join(WAIT_S)
    assert model.markers() == [[1]]  # request 2 never ran
    with pytest.raises(DeadlineExceededError):
        scheduler(model, stopping).enqueue(tokens(3), deadline=time.monotonic() - 1)


def test_a_failing_batch_fails_only_its_own_requests(stopping: list[Scheduler]) -> None:
    broken = FakeModel(fail_on=2)
    queue = scheduler(broken, stopping, max_batch_tokens=8)
    futures = {i: queue.enqueue(tokens(i, rows=2)) for i in (1, 2, 3)}  # one a batch

    queue.start()

    assert futures[1].result(WAIT_S).output[0] == 1.0
    with pytest.raises(InferenceFailedError) as failed:
        futures[2].result(WAIT_S)
    assert isinstance(failed.value.__cause__, RuntimeError)
    assert "the backend broke" not in failed.value.message  # the log has it, not the client
    assert futures[3].result(WAIT_S).output[0] == 3.0


def test_stop_drains_the_queue_and_then_refuses(
    model: FakeModel, stopping: list[Scheduler]
) -> None:
    queue = scheduler(model, stopping, max_batch_tokens=4)
    futures = [queue.enqueue(tokens(i)) for i in range(3)]

    queue.start()
    queue.stop()

    assert queue.join(WAIT_S)
    assert [f.result(0).output[0] for f in futures] == [0.0, 1.0, 2.0]
    with pytest.raises(SchedulerStoppedError):
        queue.enqueue(tokens(9))


def test_stop_without_draining_fails_what_is_queued(
    model: FakeModel, stopping: list[Scheduler]
) -> None:
    queue = scheduler(model, stopping, max_batch_tokens=4)
    queued = queue.enqueue(tokens(1))

    queue.stop(drain=False)
    queue.start()  # too late: a stopped scheduler does not start

    with pytest.raises(SchedulerStoppedError):
        queued.result(WAIT_S)
    assert model.batches == []


def test_schedulers_sharing_an_inference_lock_never_run_their_models_at_once(
    stopping: list[Scheduler],
) -> None:
    lock = threading.Lock()
    first, second = FakeModel(), FakeModel()
    first.hold.clear()
    schedulers = [
        Scheduler(made.infer, name=name, config=config(), inference_lock=lock)
        for made, name in ((first, "first"), (second, "second"))
    ]
    stopping.extend(schedulers)
    for made in schedulers:
        made.start()

    held = schedulers[0].enqueue(tokens(1))
    assert first.started.wait(WAIT_S)
    waiting = schedulers[1].enqueue(tokens(2))
    time.sleep(0.2)  # the second model's thread has had time to take its batch

    assert not second.started.is_set()  # it waits for the first model's batch
    first.hold.set()
    assert held.result(WAIT_S).output.tolist() == [1.0]
    assert waiting.result(WAIT_S).output.tolist() == [2.0]


def test_without_a_shared_lock_two_models_run_at_once(stopping: list[Scheduler]) -> None:
    first, second = FakeModel(), FakeModel()
    first.hold.clear()
    schedulers = [Scheduler(m.infer, name="m", config=config()) for m in (first, second)]
    stopping.extend(schedulers)
    for made in schedulers:
        made.start()

    schedulers[0].enqueue(tokens(1))
    assert first.started.wait(WAIT_S)
    schedulers[1].enqueue(tokens(2))

    assert second.started.wait(WAIT_S)
    first.hold.set()


def test_exclusive_inference_comes_from_the_api_settings() -> None:
    from ranker.settings import ApiSettings

    shared = SchedulerConfig.from_settings(ApiSettings())
    exclusive = SchedulerConfig.from_settings(ApiSettings(exclusive_inference=True))

    assert shared is not None
    assert not shared.exclusive_inference
    assert exclusive is not None
    assert exclusive.exclusive_inference
