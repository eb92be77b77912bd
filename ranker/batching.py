"""The Scheduler: one per served model, between the routes and the model's ``infer`` stage.

Callers tokenize in their own thread (an encoder's ``prepare``), then :meth:`Scheduler.submit`
the :class:`~ranker.stages.PreparedTokens` and await the output. One dedicated thread per
model takes the queue in arrival order and forms batches by a token budget that counts
padding: the batch's rows times its longest row stay within ``max_batch_tokens`` (one longer
request runs alone). Meanwhile the next requests tokenize, so tokenization overlaps inference.

A request whose caller has gone (its future cancelled: the client left, or its deadline
passed while it waited) is dropped before inference. Load is shed before queueing, never
after waiting: :meth:`Scheduler.admit` refuses (:class:`SchedulerOverloadedError`, with a
``retry_after_s``) when the queue holds ``max_queue_tokens`` or its estimated wait (the
tokens ahead over the measured tokens per second) is above ``max_queue_wait_s``. A failing
batch fails only its own requests (:class:`InferenceFailedError`, a backend's
:class:`~ranker.backends.base.InferenceError`: the API answers 424).
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

from ranker.backends.base import BackendError, FloatArray, InferenceError
from ranker.errors import ShoprankError
from ranker.settings import ApiSettings
from ranker.stages import PreparedTokens

logger = logging.getLogger(__name__)

Infer = Callable[[Sequence[PreparedTokens]], list[FloatArray]]
"""An encoder's ``infer`` stage: one output per input."""
RATE_SMOOTHING = 0.2
"""Weight of the newest batch in the tokens-per-second estimate (exponential average)."""


class SchedulerOverloadedError(ShoprankError):
    """The model's queue is too full or too slow to take another request now."""

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class DeadlineExceededError(ShoprankError):
    """The request's deadline passed before its model ran it."""


class InferenceFailedError(InferenceError):
    """The model failed on the batch this request ran in."""


def inference_failed(name: str, exc: Exception, *, requests: int = 1) -> InferenceFailedError:
    """The error each request of a failed batch gets: a backend's own message (it names the
    backend and its error), else only the error's type (the log has the details)."""
    where = f"{name} failed on a batch of {requests} requests" if requests > 1 else f"{name} failed"
    if isinstance(exc, BackendError):
        error = InferenceFailedError(f"{where}: {exc.message}")
    else:
        error = InferenceFailedError(
            f"{where} ({type(exc).__name__}); the server log has the details"
        )
    error.__cause__ = exc
    return error


class SchedulerStoppedError(ShoprankError):
    """The scheduler was stopped (its model no longer serves)."""


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    """A scheduler's knobs (see :class:`~ranker.settings.ApiSettings`)."""

    max_batch_tokens: int = 16_384
    max_queue_tokens: int = 262_144
    max_queue_wait_s: float = 2.0
    batch_wait_s: float = 0.0
    exclusive_inference: bool = False
    """One model's batch at a time in the process (see :class:`Scheduler`'s
    ``inference_lock``)."""

    @classmethod
    def from_settings(cls, api: ApiSettings) -> SchedulerConfig | None:
        """The API settings' knobs; None when batching is off (``max_batch_tokens`` 0)."""
        if api.max_batch_tokens == 0:
            return None
        return cls(
            max_batch_tokens=api.max_batch_tokens,
            max_queue_tokens=api.max_queue_tokens,
            max_queue_wait_s=api.max_queue_wait_s,
            batch_wait_s=api.batch_wait_ms / 1e3,
            exclusive_inference=api.exclusive_inference,
        )


@dataclass(frozen=True, slots=True)
class Inferred:
    """One request's output and how its batch went."""

    output: FloatArray
    queue_ms: float
    """From submission to its batch starting."""
    infer_ms: float
    """The batch's inference time (shared by every request in it)."""
    batch_requests: int
    batch_padded_tokens: int


@dataclass(slots=True)
class _Entry:
    prepared: PreparedTokens
    future: Future[Inferred]
    queued_at: float
    deadline: float | None


class Scheduler:
    """Queues one model's prepared inputs and runs them in batches on one thread.

    Deadlines are ``time.monotonic()`` values. ``inference_lock``: held around each batch's
    inference; schedulers sharing one never run their models at the same time (on a CPU,
    two models running at once each bring a full team of threads to the same cores).
    """

    def __init__(
        self,
        infer: Infer,
        *,
        name: str,
        config: SchedulerConfig,
        inference_lock: threading.Lock | None = None,
    ) -> None:
        if config.max_batch_tokens < 1:
            raise ValueError(f"max_batch_tokens must be at least 1, got {config.max_batch_tokens}")
        self.name = name
        self.config = config
        self._infer = infer
        self._inference_lock = inference_lock
        self._queue: deque[_Entry] = deque()
        self._queued_tokens = 0
        self._running_tokens = 0
        self._tokens_per_s: float | None = None
        self._stopping = False
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> Scheduler:
        """Start the model's thread (once)."""
        with self._changed:
            if self._thread is None and not self._stopping:
                self._thread = threading.Thread(
                    target=self._run, name=f"shoprank-{self.name}", daemon=True
                )
                self._thread.start()
        return self

    def stop(self, *, drain: bool = True) -> None:
        """Take no more requests; finish the queued ones (``drain``) or fail them with
        :class:`SchedulerStoppedError`. Returns at once; :meth:`join` waits."""
        with self._changed:
            self._stopping = True
            if not drain:
                self._fail_queued(f"{self.name} stopped")
            self._changed.notify_all()

    def join(self, timeout_s: float | None = None) -> bool:
        """Wait for the thread to end; whether it did."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout_s)
            return not thread.is_alive()
        return True

    @property
    def stopped(self) -> bool:
        """Whether it takes no more requests."""
        return self._stopping

    # -- admission -------------------------------------------------------------------------

    @property
    def queued_tokens(self) -> int:
        """Padded tokens waiting (not counting the batch running)."""
        return self._queued_tokens

    @property
    def tokens_per_s(self) -> float | None:
        """Measured padded tokens per second of inference; None before the first batch."""
        return self._tokens_per_s

    def estimated_wait_s(self) -> float:
        """How long a request queued now would wait: the tokens ahead (queued and
        running) over the measured rate; 0 before anything was measured."""
        rate = self._tokens_per_s
        if not rate:
            return 0.0
        return (self._queued_tokens + self._running_tokens) / rate

    def admit(self, tokens: int = 0) -> None:
        """Refuse now, before queueing, when the queue cannot take ``tokens`` more padded
        tokens: :class:`SchedulerOverloadedError` (too full, or too slow), or
        :class:`SchedulerStoppedError`."""
        if self._stopping:
            raise SchedulerStoppedError(f"{self.name} no longer serves")
        queued = self._queued_tokens
        wait = self.estimated_wait_s()
        retry_after = max(1, math.ceil(wait))
        if queued and queued + tokens > self.config.max_queue_tokens:
            raise SchedulerOverloadedError(
                f"{self.name}: {queued} tokens queued (the limit is "
                f"{self.config.max_queue_tokens}); retry later",
                retry_after_s=retry_after,
            )
        if wait > self.config.max_queue_wait_s:
            raise SchedulerOverloadedError(
                f"{self.name}: about {wait:.1f} s of work queued (the limit is "
                f"{self.config.max_queue_wait_s:g} s); retry later",
                retry_after_s=retry_after,
            )

    def enqueue(
        self, prepared: PreparedTokens, *, deadline: float | None = None
    ) -> Future[Inferred]:
        """Queue ``prepared`` (after :meth:`admit`); the future holds its output. Cancel the
        future to drop the request if it has not started."""
        tokens = prepared.padded_tokens
        future: Future[Inferred] = Future()
        with self._changed:
            self.admit(tokens)
            if deadline is not None and time.monotonic() >= deadline:
                raise DeadlineExceededError(f"the deadline passed before {self.name} queued it")
            self._queue.append(_Entry(prepared, future, time.monotonic(), deadline))
            self._queued_tokens += tokens
            self._changed.notify_all()
        return future

    async def submit(self, prepared: PreparedTokens, *, deadline: float | None = None) -> Inferred:
        """Queue ``prepared`` and await its output. Past ``deadline`` the request is dropped
        if it has not started and :class:`DeadlineExceededError` raised; cancelling the
        awaiting task drops it too."""
        waiting = asyncio.wrap_future(self.enqueue(prepared, deadline=deadline))
        if deadline is None:
            return await waiting
        try:
            return await asyncio.wait_for(waiting, max(0.0, deadline - time.monotonic()))
        except TimeoutError as exc:
            raise DeadlineExceededError(
                f"the deadline passed while {self.name} had the request"
            ) from exc

    # -- the model's thread ----------------------------------------------------------------

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            if batch:
                self._run_batch(batch)

    def _next_batch(self) -> list[_Entry] | None:
        """The next batch (empty when every entry taken had gone); None once stopped."""
        with self._changed:
            while not self._queue:
                if self._stopping:
                    return None
                self._changed.wait()
            if not self._stopping and self.config.batch_wait_s > 0:
                until = time.monotonic() + self.config.batch_wait_s
                while (
                    not self._stopping
                    and self._queued_tokens < self.config.max_batch_tokens
                    and (left := until - time.monotonic()) > 0
                ):
                    self._changed.wait(left)
            return self._take()

    def _take(self) -> list[_Entry]:
        """Entries from the front while the batch's rows times its longest row fit the
        budget (the first always fits); gone and expired ones are dropped."""
        batch: list[_Entry] = []
        rows = longest = 0
        now = time.monotonic()
        while self._queue:
            entry = self._queue[0]
            prepared = entry.prepared
            grown_rows = rows + prepared.rows
            grown_longest = max(longest, prepared.longest)
            if batch and grown_rows * grown_longest > self.config.max_batch_tokens:
                break
            self._queue.popleft()
            self._queued_tokens -= prepared.padded_tokens
            if not entry.future.set_running_or_notify_cancel():
                continue  # the caller has gone
            if entry.deadline is not None and now >= entry.deadline:
                entry.future.set_exception(
                    DeadlineExceededError(f"the deadline passed while {self.name} queued it")
                )
                continue
            batch.append(entry)
            rows, longest = grown_rows, grown_longest
        self._running_tokens = rows * longest
        return batch

    def _run_batch(self, batch: list[_Entry]) -> None:
        if self._inference_lock is None:
            self._infer_batch(batch)
            return
        with self._inference_lock:
            self._infer_batch(batch)

    def _infer_batch(self, batch: list[_Entry]) -> None:
        padded = self._running_tokens
        start = time.monotonic()
        try:
            outputs = self._infer([entry.prepared for entry in batch])
            if len(outputs) != len(batch):
                raise RuntimeError(f"{len(outputs)} outputs for {len(batch)} inputs")
        except Exception as exc:  # the batch's requests fail; the thread serves on
            logger.exception("%s failed on a batch of %d requests", self.name, len(batch))
            for entry in batch:
                entry.future.set_exception(inference_failed(self.name, exc, requests=len(batch)))
            return
        finally:
            with self._changed:
                self._running_tokens = 0
        elapsed = time.monotonic() - start
        if elapsed > 0 and padded > 0:
            rate = padded / elapsed
            previous = self._tokens_per_s
            self._tokens_per_s = (
                rate if previous is None else previous + RATE_SMOOTHING * (rate - previous)
            )
        for entry, output in zip(batch, outputs, strict=True):
            entry.future.set_result(
                Inferred(
                    output=output,
                    queue_ms=1e3 * (start - entry.queued_at),
                    infer_ms=1e3 * elapsed,
                    batch_requests=len(batch),
                    batch_padded_tokens=padded,
                )
            )

    def _fail_queued(self, message: str) -> None:
        while self._queue:
            entry = self._queue.popleft()
            self._queued_tokens -= entry.prepared.padded_tokens
            if entry.future.set_running_or_notify_cancel():
                entry.future.set_exception(SchedulerStoppedError(message))
