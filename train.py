"""Train or evaluate MobileNetV3 on an ImageNet-style data set with PaddlePaddle.

Single process:
    python train.py --data-path=./ILSVRC2012 --lr=0.1 --batch-size=256
Several processes (GPUs, or CPU over gloo):
    python -m paddle.distributed.launch --gpus=0,1,2,3 train.py --data-path=./ILSVRC2012 --lr=0.4
    python -m paddle.distributed.launch --nproc_per_node 2 train.py --device cpu --data-path=./lite_data
Evaluation only:
    python train.py --test-only --data-path=./ILSVRC2012 --pretrained=./mobilenet_v3_small_pretrained.pdparams
Quant-aware training (int8) from float weights, with PACT activation clipping:
    python train.py --pact_quant --pretrained=./mobilenet_v3_small_pretrained.pdparams --lr=0.001 ...
    python tools/export_model.py --pact_quant --pretrained=OUT/latest.pdparams   # int8 inference model

Exit codes: 0 ok, 1 failed (data or model error), 2 bad arguments, 77 the device
is not available on this machine (e.g. ``--device gpu`` without CUDA).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import paddle
from paddle import nn
from paddle.io import BatchSampler, DataLoader, DistributedBatchSampler
from tqdm import tqdm

from deploy.options import EXIT_FAILED, EXIT_UNSUPPORTED, cuda_available
from model import build_model, model_names
from model.weights import is_quant_aware_state, load_weights, read_state_dict
from training import distributed as dist_utils
from training.datasets import DataError, ImageClassificationDataset, find_samples
from training.metrics import MetricLogger, accuracy, correct_counts
from training.transforms import TrainTransform, eval_transform
from vision.labels import LABEL_LIST_NAME, write_label_file

logger = logging.getLogger("train")


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="MobileNetV3 classification training", add_help=add_help)
    parser.add_argument("--data-path", default="./data", help="data set root with train/ and val/ (default: ./data)")
    parser.add_argument("--data-layout", choices=("auto", "folder", "list"), default="auto",
                        help="class folders or train_list.txt/val_list.txt (default: auto)")
    parser.add_argument("--model", default="mobilenet_v3_small", help=f"one of {', '.join(model_names())}")
    parser.add_argument("--scale", type=float, default=1.0, help="width multiplier (default: 1.0)")
    parser.add_argument("--device", default="gpu", choices=("cpu", "gpu"),
                        help="cpu or gpu (default: gpu, as upstream; gpu without CUDA exits 77)")
    parser.add_argument("-b", "--batch-size", type=int, default=256, help="images per process per step")
    parser.add_argument("--epochs", type=int, default=90, help="total epochs (default: 90)")
    parser.add_argument("-j", "--workers", type=int, default=2, help="data-loading worker processes (default: 2)")
    parser.add_argument("--lr", type=float, default=0.1, help="initial learning rate (default: 0.1)")
    parser.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default: 0.9)")
    parser.add_argument("--wd", "--weight-decay", type=float, default=1e-4, dest="weight_decay",
                        help="L2 weight decay (default: 1e-4)")
    parser.add_argument("--lr-step-size", type=int, default=30, help="decay the lr every N epochs (default: 30)")
    parser.add_argument("--lr-gamma", type=float, default=0.1, help="lr decay factor (default: 0.1)")
    parser.add_argument("--label-smoothing", type=float, default=0.0, help="label smoothing (default: 0.0)")
    parser.add_argument("--output-dir", default=".", help="where checkpoints and logs go (default: .)")
    parser.add_argument("--pretrained", default=None, help="initial weights (.pdparams); the weights to test")
    parser.add_argument("--resume", default=None, help="continue from a checkpoint (e.g. OUT/latest.pdparams)")
    parser.add_argument("--start-epoch", type=int, default=0, help="first epoch number (default: 0)")
    parser.add_argument("--print-freq", type=int, default=10, help="log every N iterations (default: 10)")
    parser.add_argument("--seed", type=int, default=None, help="random seed for reproducible runs")
    parser.add_argument("--test-only", action="store_true", help="only evaluate --pretrained on the val split")
    parser.add_argument("--amp", action="store_true", help="mixed precision (bfloat16 on CPU, float16 on GPU)")
    parser.add_argument("--amp-level", "--amp_level", default=None, choices=("O1", "O2"),
                        help="AMP level; giving it implies --amp (default: O1)")
    parser.add_argument("--num-classes", type=int, default=None, help="classes (default: from the data set)")
    parser.add_argument("--train-crop-size", type=int, default=224, help="default: 224")
    parser.add_argument("--random-crop-scale", type=float, nargs=2, default=(0.08, 1.0), metavar=("MIN", "MAX"),
                        help="area range of RandomResizedCrop (default: 0.08 1.0)")
    parser.add_argument("--val-resize-size", type=int, default=256, help="default: 256")
    parser.add_argument("--val-crop-size", type=int, default=224, help="default: 224")
    parser.add_argument("--bn-recalibration-batches", type=int, default=0, metavar="N",
                        help="after each epoch, recompute BatchNorm statistics as the plain average over N "
                             "training batches (precise BN; useful for very short runs, whose running "
                             "statistics are still mostly their initial values) (default: 0 = off)")
    parser.add_argument("--pact_quant", "--pact-quant", action="store_true",
                        help="quant-aware training (int8) with PACT activation clipping, from --pretrained "
                             "float weights; export with tools/export_model.py --pact_quant")
    parser.add_argument("--quant", action="store_true",
                        help="quant-aware training (int8) without PACT; export with tools/export_model.py --quant")
    return parser


def train_one_epoch(
    model: nn.Layer,
    criterion: nn.Layer,
    optimizer: paddle.optimizer.Optimizer,
    loader: DataLoader,
    epoch: int,
    args: argparse.Namespace,
    scaler: paddle.amp.GradScaler | None,
) -> dict[str, float]:
    """One pass over ``loader``; logs in the seed's ``[Epoch e, iter: i] ...`` format."""
    model.train()
    num_classes = args.num_classes
    window = {"reader": 0.0, "batch": 0.0, "samples": 0, "steps": 0, "top1": 0.0, "top5": 0.0, "loss": 0.0}
    totals = {"loss": 0.0, "correct1": 0.0, "samples": 0.0, "time": 0.0}
    progress = tqdm(total=len(loader), desc=f"Epoch {epoch + 1}", leave=False,
                    disable=not (sys.stderr.isatty() and dist_utils.is_main_process()))
    tic = time.perf_counter()
    for step, (images, target) in enumerate(loader, 1):
        reader_cost = time.perf_counter() - tic
        loader.dataset.check_batch(target.numpy())
        with paddle.amp.auto_cast(enable=args.amp, level=args.amp_level, dtype=args.amp_dtype):
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
        if step % args.print_freq == 0 or step == len(loader):
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
def evaluate(model: nn.Layer, criterion: nn.Layer, loader: DataLoader, args: argparse.Namespace) -> dict[str, float]:
    """Top-1/top-5 over the whole val split, summed across ranks; prints `` * Acc@1 .. Acc@5 ..``."""
    model.eval()
    k5 = min(5, args.num_classes)
    metric_logger = MetricLogger(printer=logger.info if dist_utils.is_main_process() else (lambda _msg: None))
    sums = [0.0, 0.0, 0.0, 0.0]  # loss * n, correct@1, correct@5, n
    for images, target in metric_logger.log_every(loader, args.print_freq, "Test: "):
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


def build_loader(dataset: ImageClassificationDataset, args: argparse.Namespace, train: bool) -> DataLoader:
    world, rank = dist_utils.world_size(), dist_utils.rank()
    if train:
        sampler = DistributedBatchSampler(dataset, args.batch_size, num_replicas=world, rank=rank,
                                          shuffle=True, drop_last=False)
    else:
        shard = dist_utils.ShardSampler(len(dataset), world, rank)
        sampler = BatchSampler(sampler=shard, batch_size=args.batch_size, drop_last=False)
    # A sample that fails to decode does not raise inside the loader (that hangs Paddle's reader
    # thread); the dataset tags it and check_batch() raises in the training loop.
    return DataLoader(dataset, batch_sampler=sampler, num_workers=args.workers, use_shared_memory=False)


def checkpoint_paths(path: str) -> tuple[Path, Path]:
    """``W.pdparams`` and its ``W.pdopt``, from either name or the bare prefix."""
    p = Path(path)
    prefix = p.with_suffix("") if p.suffix in (".pdparams", ".pdopt") else p
    return prefix.with_suffix(".pdparams"), prefix.with_suffix(".pdopt")


def save_checkpoint(out_dir: Path, name: str, model: nn.Layer, optimizer, scheduler, epoch: int, scaler) -> None:
    paddle.save(model.state_dict(), str(out_dir / f"{name}.pdparams"))
    state = {"optimizer": optimizer.state_dict(), "lr_scheduler": scheduler.state_dict(), "epoch": epoch}
    if scaler is not None:
        state["scaler"] = scaler.state_dict()
    paddle.save(state, str(out_dir / f"{name}.pdopt"))


def resolve_args(args: argparse.Namespace) -> None:
    if args.amp_level is not None:
        args.amp = True
    args.amp_level = args.amp_level or "O1"
    args.amp_dtype = "float16" if args.device == "gpu" else "bfloat16"
    for name in ("batch_size", "epochs", "print_freq", "train_crop_size", "val_resize_size", "val_crop_size"):
        if getattr(args, name) < 1:
            raise argparse.ArgumentTypeError(f"--{name.replace('_', '-')} must be at least 1")
    low, high = args.random_crop_scale
    if not 0 < low <= high <= 1:
        raise argparse.ArgumentTypeError("--random-crop-scale needs 0 < MIN <= MAX <= 1")
    if args.bn_recalibration_batches < 0:
        raise argparse.ArgumentTypeError("--bn-recalibration-batches must be 0 or more")
    if args.workers < 0:
        raise argparse.ArgumentTypeError("--workers must be 0 or more")
    if args.test_only and not args.pretrained and not args.resume:
        raise argparse.ArgumentTypeError("--test-only needs --pretrained (the weights to evaluate)")
    args.quant_mode = "pact" if args.pact_quant else "qat" if args.quant else None
    if args.quant_mode and args.amp:
        raise argparse.ArgumentTypeError("--pact_quant/--quant cannot be combined with --amp")


def load_initial_weights(model: nn.Layer, args: argparse.Namespace) -> nn.Layer:
    """Load ``--pretrained`` and, for quant-aware training, insert the fake-quant layers.

    Float weights are loaded before quantization (the usual QAT start); a checkpoint that
    was itself saved by quant-aware training is loaded after it (evaluation, fine-tuning).
    """
    qat_checkpoint = bool(args.pretrained) and is_quant_aware_state(read_state_dict(args.pretrained))
    if qat_checkpoint and not args.quant_mode:
        raise ValueError(f"{args.pretrained} was saved by quant-aware training; add --pact_quant or --quant")
    if args.pretrained and not qat_checkpoint:
        load_weights(model, args.pretrained)
    if args.quant_mode:
        from deploy.ptq_python.qat import build_quant_aware

        build_quant_aware(pact=args.quant_mode == "pact").quantize(model)
        logger.info("quant-aware training (%s): int8 fake-quant layers inserted", args.quant_mode)
    if qat_checkpoint:
        load_weights(model, args.pretrained)
    return model


def main(args: argparse.Namespace) -> int:
    if args.device == "gpu" and not cuda_available():
        print("SKIPPED: --device gpu needs a CUDA build of Paddle and a GPU; use --device cpu", file=sys.stderr)
        return EXIT_UNSUPPORTED
    paddle.set_device(args.device)
    distributed = dist_utils.init()
    if args.seed is not None:
        paddle.seed(args.seed + dist_utils.rank())
        np.random.seed(args.seed + dist_utils.rank())

    val_samples, class_names = find_samples(args.data_path, "val", args.data_layout)
    train_samples: list = []
    if not args.test_only:
        train_samples, class_names = find_samples(args.data_path, "train", args.data_layout)
    if args.num_classes is None:
        weights_file = args.pretrained if args.test_only else None
        from_weights = None
        if weights_file:
            from model.weights import num_classes_of

            from_weights = num_classes_of(read_state_dict(weights_file))
        args.num_classes = from_weights or len(class_names)
    too_big = max(label for _, label in train_samples + val_samples)
    if too_big >= args.num_classes:
        raise DataError(f"{args.data_path}: label {too_big} does not fit --num-classes {args.num_classes}")

    model = load_initial_weights(build_model(args.model, num_classes=args.num_classes, scale=args.scale), args)
    criterion = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
    val_set = ImageClassificationDataset(val_samples, eval_transform(args.val_resize_size, args.val_crop_size))
    val_loader = build_loader(val_set, args, train=False)

    if args.test_only:
        if args.resume:
            load_weights(model, checkpoint_paths(args.resume)[0])
        evaluate(model, criterion, val_loader, args)
        return 0

    train_transform = TrainTransform(args.train_crop_size, tuple(args.random_crop_scale))
    train_set = ImageClassificationDataset(train_samples, train_transform)
    train_loader = build_loader(train_set, args, train=True)
    scheduler = paddle.optimizer.lr.StepDecay(args.lr, step_size=args.lr_step_size, gamma=args.lr_gamma)
    optimizer = paddle.optimizer.Momentum(
        learning_rate=scheduler, momentum=args.momentum, parameters=model.parameters(),
        weight_decay=paddle.regularizer.L2Decay(args.weight_decay),
    )
    scaler = None
    args.amp_applied = bool(args.amp and args.device == "gpu")
    if args.amp and not args.amp_applied:
        logger.warning("AMP: Paddle %s applies auto_cast on CUDA devices only; on CPU this run trains in "
                       "float32 (recorded as amp_applied=false in args.json)", paddle.__version__)
    if args.amp:
        if args.amp_level == "O2":
            model, optimizer = paddle.amp.decorate(model, optimizer, level="O2", dtype=args.amp_dtype,
                                                   save_dtype="float32")
        if args.amp_dtype == "float16":
            scaler = paddle.amp.GradScaler(init_loss_scaling=1024)
    if args.resume:
        params_file, opt_file = checkpoint_paths(args.resume)
        load_weights(model, params_file)
        state = paddle.load(str(opt_file))
        optimizer.set_state_dict(state["optimizer"])
        scheduler.set_state_dict(state["lr_scheduler"])
        if scaler is not None and "scaler" in state:
            scaler.load_state_dict(state["scaler"])
        args.start_epoch = int(state["epoch"]) + 1
        logger.info("resumed from %s at epoch %d", params_file, args.start_epoch + 1)
    train_model = paddle.DataParallel(model) if distributed else model

    out_dir = Path(args.output_dir)
    main_process = dist_utils.is_main_process()
    if main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
        saved = dict(vars(args))
        saved["world_size"] = dist_utils.world_size()
        (out_dir / "args.json").write_text(json.dumps(saved, indent=2, default=str) + "\n", encoding="utf-8")
        write_label_file(out_dir / LABEL_LIST_NAME, class_names)
    best_acc1 = -1.0
    start = time.time()
    logger.info("training %s (%d classes) on %d images, %d val images, epochs %d-%d, world size %d",
                args.model, args.num_classes, len(train_set), len(val_set), args.start_epoch + 1, args.epochs,
                dist_utils.world_size())
    for epoch in range(args.start_epoch, args.epochs):
        lr = optimizer.get_lr()
        stats = train_one_epoch(train_model, criterion, optimizer, train_loader, epoch, args, scaler)
        scheduler.step()
        if args.bn_recalibration_batches > 0:
            recalibrate_batchnorm(model, train_loader, args.bn_recalibration_batches)
        stats.update(evaluate(model, criterion, val_loader, args))
        if main_process:
            save_checkpoint(out_dir, "latest", model, optimizer, scheduler, epoch, scaler)
            if stats["acc1"] > best_acc1:
                best_acc1 = stats["acc1"]
                paddle.save(model.state_dict(), str(out_dir / "best.pdparams"))
            record = {"epoch": epoch + 1, "lr": lr, **{k: round(v, 6) for k, v in stats.items()}}
            with (out_dir / "metrics.jsonl").open("a", encoding="utf-8") as log_file:
                log_file.write(json.dumps(record) + "\n")
    logger.info("training time %s, best Acc@1 %.3f", time.strftime("%H:%M:%S", time.gmtime(time.time() - start)),
                best_acc1)
    return 0


def cli(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout, force=True)
    parser = get_args_parser()
    args = parser.parse_args(argv)
    try:
        resolve_args(args)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    if args.quant_mode and os.environ.get("FLAGS_enable_pir_api") != "0":  # noqa: SIM112 (Paddle flag name)
        # Paddle's quant-aware training writes legacy programs only, and the PIR switch is read
        # when paddle is imported: run again in a child process with PIR off.
        env = dict(os.environ, FLAGS_enable_pir_api="0")
        return subprocess.call([sys.executable, __file__, *(argv if argv is not None else sys.argv[1:])], env=env)
    try:
        return main(args)
    except (DataError, FileNotFoundError, IsADirectoryError, ValueError, FloatingPointError) as exc:
        logger.error("error: %s", exc)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(cli())
