"""Inference timing: per-stage timers and an AutoLog-style report, without the auto_log package."""

from __future__ import annotations

import platform
import resource
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class StageTimer:
    """Accumulates wall time per stage; the first ``warmup`` batches are not counted."""

    warmup: int = 0
    times: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    batches_seen: int = 0
    images: int = 0

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        if self.batches_seen >= self.warmup:
            self.times[name].append(time.perf_counter() - start)

    def end_batch(self, batch_images: int) -> None:
        if self.batches_seen >= self.warmup:
            self.images += batch_images
        self.batches_seen += 1

    def mean_ms(self, name: str) -> float:
        values = self.times.get(name) or []
        return 1000.0 * sum(values) / len(values) if values else 0.0

    def total_s(self) -> float:
        return sum(sum(v) for v in self.times.values())


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def format_report(
    timer: StageTimer,
    *,
    runtime: str,
    model_name: str,
    model_dir: str,
    precision: str,
    batch_size: int,
    config: dict[str, object],
    input_shape: str = "dynamic",
) -> str:
    """Sections as AutoLog prints them: env, conf, model, data, perf."""
    total = timer.total_s()
    ips = timer.images / total if total > 0 else 0.0
    lines = [
        "---------------------- Env info ----------------------",
        f" OS_version: {platform.platform()}",
        f" python_version: {platform.python_version()}",
        f" runtime: {runtime}",
        "----------------------- Conf info -----------------------",
        *(f" {key}: {value}" for key, value in config.items()),
        "----------------------- Model info ----------------------",
        f" model_name: {model_name}",
        f" model_dir: {model_dir}",
        f" precision: {precision}",
        "----------------------- Data info -----------------------",
        f" batch_size: {batch_size}",
        f" input_shape: {input_shape}",
        f" data_num: {timer.images}",
        f" warmup_batches: {timer.warmup}",
        "----------------------- Perf info -----------------------",
        f" cpu_rss(MB): {peak_rss_mb():.1f}",
        f" total time spent(s): {total:.4f}",
        f" preprocess_time(ms): {timer.mean_ms('preprocess'):.4f}, "
        f"inference_time(ms): {timer.mean_ms('inference'):.4f}, "
        f"postprocess_time(ms): {timer.mean_ms('postprocess'):.4f}",
        f" ips: {ips:.2f} images/sec",
    ]
    return "\n".join(lines)


def time_calls(call: Callable[[], object], runs: int, warmup: int = 3) -> list[float]:
    """Seconds of each of ``runs`` calls of ``call()``, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        call()
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return seconds


def median_ms(call: Callable[[], object], runs: int, warmup: int = 3) -> float:
    """Median wall time of ``call()`` in ms over ``runs`` calls after ``warmup`` untimed calls."""
    return 1000.0 * statistics.median(time_calls(call, runs, warmup))
