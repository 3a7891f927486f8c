"""Command-line conventions shared by the deployment scripts.

Exit codes (documented in ``test_tipc/README.md``; the TIPC harness relies on them):

* ``0``  the run succeeded;
* ``1``  the run failed (an error in the model, the data or the code);
* ``2``  bad command-line arguments or missing files (argparse's code);
* ``77`` the requested combination cannot run on this machine (GPU or TensorRT
  without CUDA, fp16 on a CPU without bfloat16 support, int8 on a float model).
  The harness records such a step as *skipped*, never as passed. 77 is the
  "skipped" code of the Automake test protocol.
"""

from __future__ import annotations

import argparse
import os

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNSUPPORTED = 77


class UnsupportedConfig(RuntimeError):
    """This machine cannot run the requested configuration (maps to exit code 77)."""


_TRUE = {"1", "true", "yes", "y", "on", "gpu"}
_FALSE = {"0", "false", "no", "n", "off", "cpu", "none", "null", ""}


def str2bool(value: str | bool) -> bool:
    """Parse ``True/False/1/0/yes/no`` the way upstream TIPC configs write booleans."""
    if isinstance(value, bool):
        return value
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (True/False), got {value!r}")


def add_bool_flag(parser: argparse.ArgumentParser, *names: str, default: bool, help: str) -> None:
    """``--flag`` alone means True; ``--flag=False`` / ``--flag False`` also work."""
    parser.add_argument(
        *names, type=str2bool, nargs="?", const=True, default=default,
        metavar="BOOL", help=f"{help} (default: {default})",
    )


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
