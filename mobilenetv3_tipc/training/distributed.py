"""Data-parallel helpers that work alike in one process and under paddle.distributed.launch."""

from __future__ import annotations

import faulthandler
import logging
import os
import subprocess
import sys

import paddle
import paddle.distributed as dist
from paddle.io import Sampler


def world_size() -> int:
    return dist.get_world_size()


def rank() -> int:
    return dist.get_rank()


def is_main_process() -> bool:
    return rank() == 0


logger = logging.getLogger("train")

# Runs beside the trainer while it waits in init_parallel_env(): Paddle's rendezvous (TCPStore) waits
# in C++ holding the GIL, so no Python thread or signal handler of the trainer runs until it returns
# (measured: a threading.Timer never fires). At the deadline this process prints the message; the
# trainer's faulthandler timer (a C thread) then dumps where it waited and exits 1; SIGKILL is the
# last resort. It ends by itself when the trainer is gone.
_WATCHDOG = """
import os, signal, sys, time
pid, seconds, message = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
deadline = time.monotonic() + seconds
while time.monotonic() < deadline:
    if os.getppid() != pid:
        sys.exit(0)
    time.sleep(0.2)
sys.stderr.write(message + "\\n")
sys.stderr.flush()
time.sleep(10)
if os.getppid() == pid:
    os.kill(pid, signal.SIGKILL)
"""


def master_endpoint() -> str:
    """The rendezvous address this rank dials (rank 0 serves it), from the launcher's environment."""
    endpoints = os.environ.get("PADDLE_TRAINER_ENDPOINTS", "?").split(",")
    return os.environ.get("PADDLE_MASTER") or endpoints[0]


def init(timeout_s: float | None = None) -> bool:
    """Initialise the process group when launched with several processes.

    With ``timeout_s`` the rendezvous is bounded: after that many seconds the trainer logs which
    master it waited for and exits 1. Paddle alone waits far longer (measured: a worker retries the
    master for 360 s, the master waits for missing workers over 90 s).
    """
    if world_size() <= 1:
        return False
    if timeout_s is None:
        dist.init_parallel_env()
        return True
    message = (f"ERROR train: distributed init did not finish within {timeout_s:g} s (--dist-init-timeout): "
               f"rank {rank()} of {world_size()} waited for master {master_endpoint()}; is every host of "
               "--ips reachable and its launch started?")
    watchdog = subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(timeout_s), message])
    faulthandler.dump_traceback_later(timeout_s + 1.0, exit=True)
    try:
        dist.init_parallel_env()
    finally:
        faulthandler.cancel_dump_traceback_later()
        watchdog.kill()
        watchdog.wait()
    return True


def all_reduce_sum(values: list[float]) -> list[float]:
    """Sum a list of numbers over every rank (identity in one process)."""
    if world_size() == 1:
        return values
    tensor = paddle.to_tensor(values, dtype="float64")
    dist.all_reduce(tensor)
    return [float(v) for v in tensor.numpy()]


class ShardSampler(Sampler):
    """Every ``world``-th index from ``rank``: an exact split with no padded duplicates (for eval)."""

    def __init__(self, length: int, num_replicas: int, rank: int) -> None:
        super().__init__()
        self.indices = list(range(rank, length, num_replicas))

    def __iter__(self):  # noqa: ANN204 - Sampler protocol
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
