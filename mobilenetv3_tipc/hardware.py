"""What this machine can run: CPU count, CUDA, CPU instruction-set flags."""

from __future__ import annotations

import os


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def cuda_available() -> bool:
    """True only when Paddle was built with CUDA and sees at least one GPU."""
    import paddle

    return bool(paddle.device.is_compiled_with_cuda()) and paddle.device.cuda.device_count() > 0


def cpu_has_flag(flag: str) -> bool:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            return any(flag in line.split() for line in info if line.startswith("flags"))
    except OSError:
        return False
