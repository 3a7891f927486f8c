"""Accuracy and smoothed metric logging in the style of torchvision's references."""

from __future__ import annotations

import datetime
import time
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

import paddle


def accuracy(output: paddle.Tensor, target: paddle.Tensor, topk: tuple[int, ...] = (1,)) -> list[float]:
    """Fraction (0-1, as the Paddle tutorial) of rows whose label is in the top-k, per k."""
    num_classes = output.shape[-1]
    maxk = min(max(topk), num_classes)
    _, pred = paddle.topk(output, maxk, axis=1)
    correct = pred == target.reshape([-1, 1]).astype(pred.dtype)
    batch = target.shape[0]
    return [float(correct[:, : min(k, num_classes)].astype("float32").sum()) / batch for k in topk]


def correct_counts(output: paddle.Tensor, target: paddle.Tensor, topk: tuple[int, ...]) -> list[int]:
    batch = target.shape[0]
    return [round(acc * batch) for acc in accuracy(output, target, topk)]


class SmoothedValue:
    """Tracks a window (median) and the global average of a series."""

    def __init__(self, window_size: int = 20, fmt: str = "{median:.4f} ({global_avg:.4f})") -> None:
        self.deque: deque[float] = deque(maxlen=window_size)
        self.total = 0.0
        self.count = 0
        self.fmt = fmt

    def update(self, value: float, n: int = 1) -> None:
        self.deque.append(value)
        self.count += n
        self.total += value * n

    @property
    def median(self) -> float:
        values = sorted(self.deque)
        return values[len(values) // 2] if values else 0.0

    @property
    def avg(self) -> float:
        return sum(self.deque) / len(self.deque) if self.deque else 0.0

    @property
    def global_avg(self) -> float:
        return self.total / self.count if self.count else 0.0

    def __str__(self) -> str:
        return self.fmt.format(median=self.median, avg=self.avg, global_avg=self.global_avg)


class MetricLogger:
    """``log_every`` yields items and prints ``header [i/N] eta ... meters ... time data`` lines."""

    def __init__(self, delimiter: str = "  ", printer: Any = print) -> None:
        self.meters: dict[str, SmoothedValue] = {}
        self.delimiter = delimiter
        self.printer = printer

    def update(self, n: int = 1, **kwargs: float) -> None:
        for name, value in kwargs.items():
            self.meters.setdefault(name, SmoothedValue()).update(float(value), n)

    def __str__(self) -> str:
        return self.delimiter.join(f"{name}: {meter}" for name, meter in self.meters.items())

    def log_every(self, iterable: Iterable[Any], print_freq: int, header: str = "") -> Iterator[Any]:
        total = len(iterable)  # type: ignore[arg-type]
        width = len(str(total))
        iter_time, data_time = SmoothedValue(fmt="{avg:.4f}"), SmoothedValue(fmt="{avg:.4f}")
        start = end = time.time()
        for i, obj in enumerate(iterable):
            data_time.update(time.time() - end)
            yield obj
            iter_time.update(time.time() - end)
            if i % print_freq == 0 or i == total - 1:
                eta = datetime.timedelta(seconds=int(iter_time.global_avg * (total - i - 1)))
                self.printer(
                    self.delimiter.join([
                        f"{header} [{i:>{width}}/{total}]", f"eta: {eta}", str(self),
                        f"time: {iter_time}", f"data: {data_time}",
                    ])
                )
            end = time.time()
        elapsed = datetime.timedelta(seconds=int(time.time() - start))
        self.printer(f"{header} Total time: {elapsed}")
