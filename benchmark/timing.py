"""Median-of-runs timing, interleaved across paths so load from other processes hits them alike."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping

# Pause before each block of runs: the previous path's thread pool stops spin-waiting first
# (Intel OpenMP, used by Paddle, spins for KMP_BLOCKTIME = 200 ms; onnxruntime's pool spins too).
SETTLE_S = 0.25


def interleaved(
    calls: Mapping[str, Callable[[], object]], *, warmup: int, rounds: int, runs: int, settle_s: float = SETTLE_S
) -> dict[str, list[float]]:
    """Seconds per call for each of ``calls``.

    Each call is first run ``warmup`` times untimed; then ``rounds`` rounds run every
    call ``runs`` times in turn, so a slow spell on the machine is shared by all paths.
    Each block starts with a ``settle_s`` pause and one untimed call, so one path's
    spinning worker threads do not steal the cores from the next path's first runs.
    """
    for call in calls.values():
        for _ in range(warmup):
            call()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            time.sleep(settle_s)
            call()
            for _ in range(runs):
                start = time.perf_counter()
                call()
                samples[name].append(time.perf_counter() - start)
    return samples


def summarize(seconds: list[float], images: int = 1) -> dict[str, float]:
    """Median and p90 latency (ms per call), ms per image and images/s from per-call seconds."""
    if not seconds:
        raise ValueError("no timing samples")
    ordered = sorted(seconds)
    median = statistics.median(ordered)
    p90 = ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)]
    return {
        "median_ms": round(median * 1000.0, 4),
        "p90_ms": round(p90 * 1000.0, 4),
        "ms_per_image": round(median * 1000.0 / images, 4),
        "images_per_s": round(images / median, 3),
        "runs": len(seconds),
    }
