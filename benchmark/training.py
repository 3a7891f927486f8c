"""Training images/s on synthetic batches: Paddle dygraph, Paddle ``jit.to_static``, PyTorch eager.

Each framework runs in its own child process (``python -m benchmark.training``) so
their OpenMP thread pools do not compete. The loop is train.py's ``train_one_epoch``
step without the data loader: forward, cross-entropy, backward, Momentum step,
clear gradients, read the loss. PyTorch (torchvision's MobileNetV3) is a reference
only: it is measured when ``torch`` and ``torchvision`` are importable.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
FRAMEWORKS = ("paddle", "torch")


def torch_available() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("torch", "torchvision"))


def _sgd_step(net: Any, criterion: Any, optimizer: Any, images: Any, labels: Any,
              clear_grad: Callable[[], object]) -> Callable[[], float]:
    """One training step on a fixed batch, for either framework (their APIs match but for ``clear_grad``)."""

    def step() -> float:
        loss = criterion(net(images), labels)
        loss.backward()
        optimizer.step()
        clear_grad()
        return float(loss)

    return step


def _paddle_step(model_name: str, batch: int, to_static: bool) -> Callable[[], float]:
    import numpy as np
    import paddle

    from mobilenetv3_tipc.model import build_model

    paddle.seed(0)
    net = build_model(model_name, num_classes=1000)
    net.train()
    if to_static:
        net = paddle.jit.to_static(net, full_graph=True)
    criterion = paddle.nn.CrossEntropyLoss()
    optimizer = paddle.optimizer.Momentum(learning_rate=0.01, momentum=0.9, parameters=net.parameters(),
                                          weight_decay=paddle.regularizer.L2Decay(1e-5))
    rng = np.random.default_rng(0)
    images = paddle.to_tensor(rng.standard_normal((batch, 3, 224, 224), dtype=np.float32))
    labels = paddle.to_tensor(rng.integers(0, 1000, (batch,)).astype(np.int64))
    return _sgd_step(net, criterion, optimizer, images, labels, optimizer.clear_grad)


def _torch_step(model_name: str, batch: int) -> Callable[[], float]:
    import torch
    import torchvision

    torch.manual_seed(0)
    net = getattr(torchvision.models, model_name)(num_classes=1000)
    net.train()
    criterion = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-5)
    images = torch.randn(batch, 3, 224, 224)
    labels = torch.randint(0, 1000, (batch,))
    return _sgd_step(net, criterion, optimizer, images, labels, optimizer.zero_grad)


def measure(step: Callable[[], float], batch: int, warmup: int, steps: int) -> dict[str, float]:
    """Median images/s over ``steps`` timed steps after ``warmup`` untimed ones."""
    from mobilenetv3_tipc.inference.timing_report import time_calls

    median = statistics.median(time_calls(step, steps, warmup))
    return {"images_per_s": round(batch / median, 3), "median_step_s": round(median, 4), "steps": steps}


def run_framework(framework: str, models: list[str], batch: int, threads: int, warmup: int, steps: int,
                  to_static_models: list[str]) -> dict[str, dict[str, float]]:
    """In this process: ``{"<framework>[-to_static]/<model>": figures}``."""
    results = {}
    if framework == "paddle":
        import paddle
        from paddle.base import core

        paddle.set_device("cpu")
        core.set_num_threads(threads)
        for name in models:
            results[f"paddle-dygraph/{name}"] = measure(_paddle_step(name, batch, False), batch, warmup, steps)
        for name in to_static_models:
            results[f"paddle-to_static/{name}"] = measure(_paddle_step(name, batch, True), batch, warmup, steps)
    elif framework == "torch":
        import torch

        torch.set_num_threads(threads)
        for name in models:
            results[f"torch-eager/{name}"] = measure(_torch_step(name, batch), batch, warmup, steps)
    else:
        raise ValueError(f"framework must be one of {', '.join(FRAMEWORKS)}, got {framework!r}")
    return results


def run_child(framework: str, models: list[str], batch: int, threads: int, warmup: int, steps: int,
              to_static_models: list[str], timeout: float = 900) -> dict[str, dict[str, float]]:
    """:func:`run_framework` in a child process with ``threads`` OpenMP threads."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = [sys.executable, "-m", "benchmark.training", "--framework", framework, "--models", ",".join(models),
           "--batch", str(batch), "--threads", str(threads), "--warmup", str(warmup), "--steps", str(steps),
           "--to-static", ",".join(to_static_models)]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{framework} training benchmark failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--framework", choices=FRAMEWORKS, required=True)
    parser.add_argument("--models", default="mobilenet_v3_small", help="comma-separated model names")
    parser.add_argument("--to-static", default="", help="comma-separated models also trained with jit.to_static")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args(argv)
    split = [name for name in args.models.split(",") if name]
    static = [name for name in args.to_static.split(",") if name]
    results = run_framework(args.framework, split, args.batch, args.threads, args.warmup, args.steps, static)
    sys.stdout.write(json.dumps(results) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
