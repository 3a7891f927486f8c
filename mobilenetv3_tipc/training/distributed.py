"""Data-parallel helpers that work alike in one process and under paddle.distributed.launch."""

from __future__ import annotations

import paddle
import paddle.distributed as dist
from paddle.io import Sampler


def world_size() -> int:
    return dist.get_world_size()


def rank() -> int:
    return dist.get_rank()


def is_main_process() -> bool:
    return rank() == 0


def init() -> bool:
    """Initialise the process group when launched with several processes."""
    if world_size() > 1:
        dist.init_parallel_env()
        return True
    return False


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
