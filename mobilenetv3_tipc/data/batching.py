"""Batched preprocessing on a few threads, overlapped with whatever the caller does next.

:func:`mobilenetv3_tipc.data.preprocess.preprocess` costs more per image than the model, so an
end-to-end loop that decodes, then infers, then decodes again leaves the cores idle half
the time. :class:`BatchPreprocessor` spreads a batch's images over worker threads (Pillow
releases the GIL while it decodes and resizes, numpy while it normalizes) and
:meth:`BatchPreprocessor.iter_batches` starts the next batch before handing out the
current one, so its preparation runs while the caller's inference does. The tensors are
exactly :func:`~mobilenetv3_tipc.data.preprocess.preprocess`'s.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from types import TracebackType

import numpy as np

from mobilenetv3_tipc.data.preprocess import CROP_SIZE, MAX_PIXELS, RESIZE_SIZE, ImageSource, preprocess

logger = logging.getLogger(__name__)

MAX_DEFAULT_WORKERS = 4


def default_workers() -> int:
    """One preprocessing thread per available core, at most :data:`MAX_DEFAULT_WORKERS`."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_DEFAULT_WORKERS))


class PendingBatch:
    """A batch being preprocessed; :meth:`result` waits for it."""

    def __init__(self, array: np.ndarray, futures: list[Future[np.ndarray]]) -> None:
        self._array = array
        self._futures = futures

    def result(self) -> np.ndarray:
        """The ``(N, 3, crop, crop)`` float32 batch; raises the first image's error if any failed.

        Waits for every image first, so no worker writes into the batch afterwards.
        """
        wait(self._futures)
        for future in self._futures:
            error = future.exception()
            if error is not None:
                raise error
        return self._array


class BatchPreprocessor:
    """``(sources) -> (N, 3, crop, crop)`` batches, prepared by ``workers`` threads.

    Use as a context manager (or call :meth:`close`) to stop the threads. Each batch is a
    new array, so the caller may keep it.
    """

    def __init__(
        self,
        workers: int = 0,
        *,
        resize_size: int = RESIZE_SIZE,
        crop_size: int = CROP_SIZE,
        max_pixels: int = MAX_PIXELS,
    ) -> None:
        if workers < 0:
            raise ValueError(f"workers must be >= 0 (0 = one per core), got {workers}")
        self.workers = workers or default_workers()
        self.resize_size = resize_size
        self.crop_size = crop_size
        self.max_pixels = max_pixels
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="preprocess")

    def submit(self, sources: Sequence[ImageSource]) -> PendingBatch:
        """Start preprocessing ``sources``; returns at once."""
        if not sources:
            raise ValueError("a batch needs at least one image")
        batch = np.empty((len(sources), 3, self.crop_size, self.crop_size), np.float32)
        futures = [
            self._pool.submit(preprocess, source, self.resize_size, self.crop_size, self.max_pixels, batch[index])
            for index, source in enumerate(sources)
        ]
        return PendingBatch(batch, futures)

    def __call__(self, sources: Sequence[ImageSource]) -> np.ndarray:
        return self.submit(sources).result()

    def iter_batches(
        self, batches: Iterable[Sequence[ImageSource]]
    ) -> Iterator[tuple[Sequence[ImageSource], PendingBatch]]:
        """``(sources, pending)`` per batch, in order, each batch started before the previous is handed out.

        While the caller runs inference on batch ``i`` (``pending.result()`` then its
        model), the workers already prepare batch ``i + 1``. One batch ahead at most.
        """
        iterator = iter(batches)
        current = next(iterator, None)
        if current is None:
            return
        pending = self.submit(current)
        for upcoming in iterator:
            upcoming_pending = self.submit(upcoming)
            yield current, pending
            current, pending = upcoming, upcoming_pending
        yield current, pending

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> BatchPreprocessor:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
