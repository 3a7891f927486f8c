"""The training loop's pieces as plain functions: data loaders, one epoch, evaluation, precise BN
and the parameter checksum (checkpoints: :mod:`mobilenetv3_tipc.training.checkpoints`)."""

from __future__ import annotations

import hashlib
import logging
import sys
import time
from dataclasses import dataclass

import numpy as np
import paddle
from paddle import nn
from paddle.io import BatchSampler, DataLoader, DistributedBatchSampler
from tqdm import tqdm

from mobilenetv3_tipc.data.datasets import ImageClassificationDataset
from mobilenetv3_tipc.training import distributed as dist_utils
from mobilenetv3_tipc.training.metrics import MetricLogger, accuracy, correct_counts
from mobilenetv3_tipc.training.profiler import TrainProfiler
from mobilenetv3_tipc.training.visualdl_log import ScalarWriter

logger = logging.getLogger("train")


@dataclass(frozen=True)
class Amp:
    """Mixed precision: ``auto_cast`` settings (``enabled=False`` trains in float32)."""

    enabled: bool = False
    level: str = "O1"
    dtype: str = "bfloat16"  # float16 on GPU


def build_loader(dataset: ImageClassificationDataset, batch_size: int, workers: int, train: bool) -> DataLoader:
    world, rank = dist_utils.world_size(), dist_utils.rank()
    if train:
        sampler = DistributedBatchSampler(dataset, batch_size, num_replicas=world, rank=rank,
                                          shuffle=True, drop_last=False)
    else:
        shard = dist_utils.ShardSampler(len(dataset), world, rank)
        sampler = BatchSampler(sampler=shard, batch_size=batch_size, drop_last=False)
    # A sample that fails to decode does not raise inside the loader (that hangs Paddle's reader
    # thread); the dataset tags it and check_batch() raises in the training loop.
    return DataLoader(dataset, batch_sampler=sampler, num_workers=workers, use_shared_memory=False)


def train_one_epoch(
    model: nn.Layer,
    criterion: nn.Layer,
    optimizer: paddle.optimizer.Optimizer,
    loader: DataLoader,
    epoch: int,
    *,
    num_classes: int,
    print_freq: int,
    amp: Amp,
    scaler: paddle.amp.GradScaler | None = None,
    profiler: TrainProfiler | None = None,
    max_steps: int | None = None,
    scalars: ScalarWriter | None = None,
) -> dict[str, float]:
    """One pass over ``loader`` (at most ``max_steps`` steps); logs in the ``[Epoch e, iter: i] ...`` format.

    ``profiler.step()`` runs after every step. ``"steps"`` in the result is the number of steps run,
    ``"stop"`` is 1.0 when training should end after this epoch (``max_steps`` reached, or the
    profiler recorded its range with ``exit_on_finished``). ``scalars`` receives ``train/loss``,
    ``train/acc1`` and ``train/lr`` of every step at the global step ``epoch * len(loader) + step``.
    """
    model.train()
    window = {"reader": 0.0, "batch": 0.0, "samples": 0, "steps": 0, "top1": 0.0, "top5": 0.0, "loss": 0.0}
    totals = {"loss": 0.0, "correct1": 0.0, "samples": 0.0, "time": 0.0}
    progress = tqdm(total=len(loader), desc=f"Epoch {epoch + 1}", leave=False,
                    disable=not (sys.stderr.isatty() and dist_utils.is_main_process()))
    last_step = len(loader) if max_steps is None else min(len(loader), max_steps)
    stop = max_steps is not None and max_steps <= len(loader)
    step = 0
    tic = time.perf_counter()
    for step, (images, target) in enumerate(loader, 1):
        reader_cost = time.perf_counter() - tic
        loader.dataset.check_batch(target.numpy())
        with paddle.amp.auto_cast(enable=amp.enabled, level=amp.level, dtype=amp.dtype):
            output = model(images)
            loss = criterion(output, target)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        optimizer.clear_grad()
        output = output.astype("float32")
        acc1, acc5 = accuracy(output, target, topk=(1, min(5, num_classes)))
        batch = int(images.shape[0])
        loss_value = float(loss)
        if not np.isfinite(loss_value):
            raise FloatingPointError(f"loss is {loss_value} at epoch {epoch + 1}, iteration {step}")
        batch_cost = time.perf_counter() - tic
        for key, value in (("reader", reader_cost), ("batch", batch_cost), ("samples", batch),
                           ("steps", 1), ("top1", acc1), ("top5", acc5), ("loss", loss_value)):
            window[key] += value
        totals["loss"] += loss_value * batch
        totals["correct1"] += acc1 * batch
        totals["samples"] += batch
        totals["time"] += batch_cost
        progress.update(1)
        if scalars is not None:
            global_step = epoch * len(loader) + step
            for tag, value in (("train/loss", loss_value), ("train/acc1", acc1), ("train/lr", optimizer.get_lr())):
                scalars.add_scalar(tag, float(value), global_step)
        if profiler is not None and profiler.step(batch):
            stop, last_step = True, step
        if step % print_freq == 0 or step == last_step:
            n = window["steps"]
            if dist_utils.is_main_process():
                logger.info(
                    "[Epoch %d, iter: %d] top1: %.5f, top5: %.5f, lr: %.5f, loss: %.5f, "
                    "avg_reader_cost: %.5f sec, avg_batch_cost: %.5f sec, avg_samples: %.1f, "
                    "avg_ips: %.5f images/sec.",
                    epoch + 1, step, window["top1"] / n, window["top5"] / n, optimizer.get_lr(),
                    window["loss"] / n, window["reader"] / n, window["batch"] / n, window["samples"] / n,
                    window["samples"] / window["batch"],
                )
            window = dict.fromkeys(window, 0.0)
        if step == last_step:
            break
        tic = time.perf_counter()
    progress.close()
    loss_sum, correct1, samples, elapsed = dist_utils.all_reduce_sum(
        [totals["loss"], totals["correct1"], totals["samples"], totals["time"]]
    )
    world = dist_utils.world_size()
    return {
        "train_loss": loss_sum / max(samples, 1),
        "train_acc1": correct1 / max(samples, 1),
        "train_ips": samples / max(elapsed / world, 1e-9),
        "steps": float(step),
        "stop": float(stop),
    }


@paddle.no_grad()
def recalibrate_batchnorm(model: nn.Layer, loader: DataLoader, batches: int) -> None:
    """Precise BN: set every BN's running mean/variance to the average over ``batches`` batches."""
    norms = [layer for layer in model.sublayers() if isinstance(layer, nn.BatchNorm2D)]
    saved = [layer._momentum for layer in norms]
    model.train()
    seen = 0
    for images, target in loader:
        loader.dataset.check_batch(target.numpy())
        seen += 1
        for layer in norms:
            # running = m * running + (1 - m) * batch; m = (k-1)/k gives the mean of k batches
            layer._momentum = (seen - 1) / seen
        model(images)
        if seen >= batches:
            break
    for layer, momentum in zip(norms, saved, strict=True):
        layer._momentum = momentum
    logger.info("recalibrated %d BatchNorm layers over %d batches", len(norms), seen)


@paddle.no_grad()
def evaluate(model: nn.Layer, criterion: nn.Layer, loader: DataLoader, *, num_classes: int,
             print_freq: int) -> dict[str, float]:
    """Top-1/top-5 over the whole val split, summed across ranks; prints `` * Acc@1 .. Acc@5 ..``."""
    model.eval()
    k5 = min(5, num_classes)
    metric_logger = MetricLogger(printer=logger.info if dist_utils.is_main_process() else (lambda _msg: None))
    sums = [0.0, 0.0, 0.0, 0.0]  # loss * n, correct@1, correct@5, n
    for images, target in metric_logger.log_every(loader, print_freq, "Test: "):
        loader.dataset.check_batch(target.numpy())
        output = model(images).astype("float32")
        loss = float(criterion(output, target))
        c1, c5 = correct_counts(output, target, (1, k5))
        n = int(images.shape[0])
        metric_logger.update(n=n, loss=loss, acc1=c1 / n, acc5=c5 / n)
        for i, value in enumerate((loss * n, c1, c5, n)):
            sums[i] += value
    loss_sum, correct1, correct5, count = dist_utils.all_reduce_sum(sums)
    count = max(count, 1.0)
    result = {"val_loss": loss_sum / count, "acc1": correct1 / count, "acc5": correct5 / count}
    if dist_utils.is_main_process():
        print(f" * Acc@1 {result['acc1']:.3f} Acc@5 {result['acc5']:.3f}", flush=True)
    return result


def param_checksum(model: nn.Layer) -> str:
    """SHA-256 over every trainable parameter (name, dtype, shape, bytes) in name order.

    Ranks of a data-parallel run end with equal checksums (gradients are all-reduced); a scale-out
    test compares them. BatchNorm running statistics are left out (Paddle lists them as non-trainable
    parameters): each rank computes its own (measured: two CPU ranks differ in exactly those 68 tensors
    of mobilenet_v3_small after one step, by up to 3e-4).
    """
    digest = hashlib.sha256()
    trainable = [(name, param) for name, param in model.named_parameters() if param.trainable]
    for name, param in sorted(trainable, key=lambda item: item[0]):
        array = np.ascontiguousarray(param.numpy())
        digest.update(f"{name}:{array.dtype}:{array.shape};".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()
