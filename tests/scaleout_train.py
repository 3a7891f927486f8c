"""train.py with two additions the scale-out test needs, until train.py has them itself.

* Every rank logs ``param_checksum: <sha256>`` after each evaluation: the test compares the
  lines of the ranks to prove data-parallel training kept the replicas identical. The checksum
  covers the trainable parameters only (see :func:`parameter_checksum`).
* The rendezvous of ``paddle.distributed.init_parallel_env()`` is bounded: when it has not
  finished after ``MTIPC_DIST_INIT_TIMEOUT`` seconds (default 300) the process says which
  master it waited for and is terminated. Paddle's own waits are far longer: a worker retries the
  master's TCP store for 360 s, and the master waits for missing workers longer still
  (measured: still waiting after 45 s; without a bound the launch hangs).

    python -m paddle.distributed.launch ... tests/scaleout_train.py --device cpu ...
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
from collections.abc import Iterable

import numpy as np

logger = logging.getLogger("train")

INIT_TIMEOUT_ENV = "MTIPC_DIST_INIT_TIMEOUT"


def parameter_checksum(named_arrays: Iterable[tuple[str, np.ndarray]]) -> str:
    """sha256 over (name, dtype, shape, bytes) of each array, in name order.

    Only trainable parameters go in: Paddle's DataParallel all-reduces gradients, so the
    parameters agree bit for bit across ranks, while BatchNorm running statistics are updated
    by each rank from its own shard of the data.
    """
    digest = hashlib.sha256()
    for name, array in sorted(named_arrays, key=lambda item: item[0]):
        array = np.ascontiguousarray(array)
        digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def trainable_parameters(model) -> list[tuple[str, np.ndarray]]:  # noqa: ANN001 - a paddle.nn.Layer
    """(name, value) of the parameters the optimizer updates.

    Paddle keeps BatchNorm running mean/variance as parameters too, with ``stop_gradient=True``;
    they are left out.
    """
    return [(name, p.numpy()) for name, p in model.named_parameters() if not p.stop_gradient]


# Runs beside the trainer: Paddle's rendezvous waits in C++ holding the GIL, so no Python thread
# or signal handler of the trainer itself runs until it returns.
_WATCHDOG = """
import os, signal, sys, time
pid, seconds, message = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
deadline = time.monotonic() + seconds
while time.monotonic() < deadline:
    if os.getppid() != pid:
        sys.exit(0)
    time.sleep(0.5)
sys.stderr.write(message + "\\n")
sys.stderr.flush()
os.kill(pid, signal.SIGTERM)
time.sleep(5)
if os.getppid() == pid:
    os.kill(pid, signal.SIGKILL)
"""


def bounded(init, seconds: float):  # noqa: ANN001, ANN201 - wraps training.distributed.init
    """``init`` that is ended (SIGTERM, then SIGKILL) when it takes longer than ``seconds``."""

    def init_within_bound() -> bool:
        master = os.environ.get("PADDLE_MASTER") or os.environ.get("PADDLE_TRAINER_ENDPOINTS", "?")
        message = (f"error: distributed init did not finish within {seconds:.0f} s ({INIT_TIMEOUT_ENV}); "
                   f"rank {os.environ.get('PADDLE_TRAINER_ID', '?')} waited for master {master}: "
                   "is every host of --ips reachable and started?")
        watchdog = subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(seconds), message])
        try:
            return init()
        finally:
            watchdog.kill()
            watchdog.wait()

    return init_within_bound


def main() -> int:
    import train
    from training import distributed

    distributed.init = bounded(distributed.init, float(os.environ.get(INIT_TIMEOUT_ENV, "300")))

    original = train.evaluate

    def evaluate_and_log_checksum(model, criterion, loader, args):  # noqa: ANN001, ANN202 - same as train.evaluate
        result = original(model, criterion, loader, args)
        checksum = parameter_checksum(trainable_parameters(model))
        logger.info("param_checksum: %s", checksum)
        return result

    train.evaluate = evaluate_and_log_checksum
    return train.cli()


if __name__ == "__main__":
    sys.exit(main())
