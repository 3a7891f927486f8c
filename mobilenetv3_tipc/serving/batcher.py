"""Dynamic batching: concurrent requests are grouped into one model call.

``op.<name>.batch_size`` is the most images one model call takes and
``auto_batching_timeout`` (ms) how long the first waiting request may wait for
others to join. Each of ``concurrency`` worker threads owns one predictor
(created and warmed up in that thread) and loops: take the oldest request, add
queued requests while they fit and the wait has not expired, run the model once,
hand every request its rows.

A batch only waits for requests that are known to be on their way: the server
wraps receiving, parsing and preprocessing of each request in :meth:`DynamicBatcher.incoming`,
and a partial batch waits (at most ``auto_batching_timeout``) only while some
request is inside that block. A lone request therefore runs at once instead of
sitting out the window, and under load batches still fill, both from requests
that queued while the model ran and from those about to arrive.

Differences from upstream, on purpose: ``auto_batching_timeout <= 0`` means "take
what is already queued, never wait" (upstream blocks until ``batch_size``
requests arrive); no wait when no other request is being prepared (upstream
waits out the window); requests whose caller gave up (timeout) are dropped before
they reach the model; one request larger than ``batch_size`` runs alone, whole.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from mobilenetv3_tipc.serving.backends import Backend, BackendFactory

logger = logging.getLogger(__name__)

BatchObserver = Callable[[int, int, float], None]  # (images, requests, seconds)


class BatcherStopped(RuntimeError):
    """The batcher is shutting down and takes no new work."""


class BatchFuture(Future):
    """The future :meth:`DynamicBatcher.submit` returns; also tells when its model call ran.

    ``model_start``/``model_end`` are ``time.perf_counter()`` values, set when the model
    call succeeded (``None`` otherwise).
    """

    def __init__(self) -> None:
        super().__init__()
        self.model_start: float | None = None
        self.model_end: float | None = None


@dataclass
class _Job:
    batch: np.ndarray
    future: BatchFuture
    enqueued: float = field(default_factory=time.monotonic)
    deadline: float | None = None

    @property
    def size(self) -> int:
        return int(self.batch.shape[0])


class Arrival:
    """One request on its way to the batcher (see :meth:`DynamicBatcher.incoming`)."""

    def __init__(self, batcher: DynamicBatcher) -> None:
        self._batcher = batcher
        self._open = True

    def submit(self, batch: np.ndarray, deadline: float | None = None) -> BatchFuture:
        return self._batcher._enqueue(batch, deadline, self)

    def leave_locked(self) -> None:
        """End the mark (the batcher's lock is held); idempotent."""
        if self._open:
            self._open = False
            self._batcher._incoming -= 1
            self._batcher._cond.notify_all()

    def leave(self) -> None:
        with self._batcher._cond:
            self.leave_locked()


class DynamicBatcher:
    def __init__(
        self,
        backend_factory: BackendFactory,
        *,
        workers: int = 1,
        max_batch_size: int = 1,
        batch_timeout_s: float = 0.0,
        warmup_shape: tuple[int, int, int] = (3, 224, 224),
        on_batch: BatchObserver | None = None,
    ) -> None:
        self._factory = backend_factory
        self.workers = max(1, workers)
        self.max_batch_size = max(1, max_batch_size)
        self.batch_timeout_s = max(0.0, batch_timeout_s)
        self.warmup_shape = warmup_shape
        self.on_batch = on_batch
        self.num_classes: int | None = None
        self.engine = ""  # the backend's engine name (e.g. "openvino"), once a worker has loaded
        self.model_calls = 0
        self._queue: collections.deque[_Job] = collections.deque()
        self._cond = threading.Condition()
        self._incoming = 0  # requests being parsed/preprocessed (see incoming())
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self._ready = 0
        self._errors: list[BaseException] = []

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self, timeout_s: float | None = None) -> None:
        """Start the workers; each loads its predictor and runs a warm-up. Re-raises a worker's load error."""
        for index in range(self.workers):
            thread = threading.Thread(target=self._worker_main, args=(index,), name=f"inference-{index}",
                                      daemon=True)
            self._threads.append(thread)
            thread.start()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            while self._ready + len(self._errors) < self.workers:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"model workers not ready within {timeout_s} s")
                self._cond.wait(remaining)
            if self._errors:
                self._stopping = True
                self._cond.notify_all()
                raise self._errors[0]

    def stop(self, timeout_s: float = 10.0) -> None:
        """Finish the queued requests, then stop the workers (waits at most ``timeout_s``)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._cond:
            leftover = list(self._queue)
            self._queue.clear()
        for job in leftover:
            if job.future.set_running_or_notify_cancel():
                job.future.set_exception(BatcherStopped("the service stopped before this request ran"))

    @property
    def healthy(self) -> bool:
        return (not self._stopping and self._ready == self.workers
                and all(t.is_alive() for t in self._threads))

    @property
    def stopping(self) -> bool:
        return self._stopping

    def queue_depth(self) -> int:
        with self._cond:
            return sum(job.size for job in self._queue)

    # -- requests ------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def incoming(self) -> Iterator[Arrival]:
        """Mark a request as on its way (being received/parsed/preprocessed); yields its :class:`Arrival`.

        While any request is inside such a block, a partial batch waits for it (at most
        the batch timeout); with none, a batch runs at once. ``arrival.submit`` queues the
        request like :meth:`submit` and ends the mark in the same step; leaving the block
        without submitting (a bad request) ends the mark too.
        """
        arrival = Arrival(self)
        with self._cond:
            self._incoming += 1
        try:
            yield arrival
        finally:
            arrival.leave()

    def submit(self, batch: np.ndarray, deadline: float | None = None) -> BatchFuture:
        """Queue an ``(n, C, H, W)`` array; the future resolves to its ``(n, classes)`` output rows."""
        return self._enqueue(batch, deadline, None)

    def _enqueue(self, batch: np.ndarray, deadline: float | None, arrival: Arrival | None) -> BatchFuture:
        job = _Job(batch=batch, future=BatchFuture(), deadline=deadline)
        with self._cond:
            if arrival is not None:
                arrival.leave_locked()
            if self._stopping:
                self._cond.notify_all()
                raise BatcherStopped("the service is shutting down")
            self._queue.append(job)
            self._cond.notify_all()
        return job.future

    # -- workers -------------------------------------------------------------------------------------
    def _worker_main(self, index: int) -> None:
        try:
            backend = self._factory(index)
            self._warm_up(backend)
        except BaseException as exc:  # noqa: BLE001 - handed to start(), which re-raises it
            logger.debug("worker %d failed to load", index, exc_info=True)
            with self._cond:
                self._errors.append(exc)
                self._cond.notify_all()
            return
        with self._cond:
            self._ready += 1
            self._cond.notify_all()
        logger.info("inference worker %d ready", index)
        while True:
            jobs = self._collect()
            if jobs is None:
                return
            self._run(backend, jobs)

    def _warm_up(self, backend: Backend) -> None:
        sizes = sorted({1, self.max_batch_size})
        for size in sizes:
            out = backend.run(np.zeros((size, *self.warmup_shape), dtype=np.float32))
            if out.ndim != 2 or out.shape[0] != size:
                raise RuntimeError(f"the model returned shape {out.shape} for a batch of {size}; "
                                   "expected (batch, classes)")
            self.num_classes = int(out.shape[1])
        self.engine = str(getattr(backend, "engine", "") or type(backend).__name__)

    def _live_head(self) -> _Job | None:
        """Drop abandoned jobs at the head of the queue and return the next live one (lock held)."""
        while self._queue:
            job = self._queue[0]
            if job.future.cancelled():
                self._queue.popleft()
                continue
            if job.deadline is not None and time.monotonic() > job.deadline:
                self._queue.popleft()
                if job.future.set_running_or_notify_cancel():
                    job.future.set_exception(TimeoutError("timed out while waiting in the batch queue"))
                continue
            return job
        return None

    def _collect(self) -> list[_Job] | None:
        jobs: list[_Job] = []
        total = 0
        with self._cond:
            while not jobs:
                head = self._live_head()
                if head is None:
                    if self._stopping:
                        return None
                    self._cond.wait()
                    continue
                self._queue.popleft()
                if head.future.set_running_or_notify_cancel():
                    jobs.append(head)
                    total = head.size
            wait_until = jobs[0].enqueued + self.batch_timeout_s
            while total < self.max_batch_size:
                head = self._live_head()
                if head is not None:
                    if total + head.size > self.max_batch_size:
                        break
                    self._queue.popleft()
                    if head.future.set_running_or_notify_cancel():
                        jobs.append(head)
                        total += head.size
                    continue
                remaining = wait_until - time.monotonic()
                if remaining <= 0 or self._stopping or self._incoming <= 0:
                    break
                self._cond.wait(remaining)
        return jobs

    def _run(self, backend: Backend, jobs: list[_Job]) -> None:
        batch = jobs[0].batch if len(jobs) == 1 else np.concatenate([job.batch for job in jobs])
        start = time.perf_counter()
        try:
            out = backend.run(batch)
            if out.shape[0] != batch.shape[0]:
                raise RuntimeError(f"the model returned {out.shape[0]} rows for a batch of {batch.shape[0]}")
        except Exception as exc:  # noqa: BLE001 - every waiting request gets the error, the worker lives on
            logger.exception("model call failed for a batch of %d image(s)", batch.shape[0])
            for job in jobs:
                job.future.set_exception(exc)
            return
        end = time.perf_counter()
        seconds = end - start
        with self._cond:
            self.model_calls += 1
        offset = 0
        for job in jobs:
            job.future.model_start, job.future.model_end = start, end
            job.future.set_result(out[offset:offset + job.size])
            offset += job.size
        if self.on_batch is not None:
            self.on_batch(int(batch.shape[0]), len(jobs), seconds)
