"""Train or evaluate MobileNetV3 on an ImageNet-style data set with PaddlePaddle.

Single process:
    python train.py --data-path=./ILSVRC2012 --lr=0.1 --batch-size=256
Several processes (GPUs, or CPU over gloo):
    python -m paddle.distributed.launch --gpus=0,1,2,3 train.py --data-path=./ILSVRC2012 --lr=0.4
    python -m paddle.distributed.launch --nproc_per_node 2 train.py --device cpu --data-path=./lite_data
Evaluation only:
    python train.py --test-only --data-path=./ILSVRC2012 --pretrained=./mobilenet_v3_small_pretrained.pdparams
Dynamic-to-static training (paddle.jit.to_static, full graph), a bounded benchmark run, the profiler:
    python train.py --to_static --max-steps 20 --data-path=./lite_data --device cpu
    python train.py --max-steps 20 --batch-size 2 --data-path=./lite_data --device cpu --output-dir=OUT \
        --profiler_options "batch_range=[10,20];state=CPU;profile_path=model.profile"
VisualDL logs (optional package visualdl) under OUT/vdl, then ``visualdl --logdir OUT/vdl``:
    python train.py --use_visualdl --output-dir=OUT --data-path=./lite_data --device cpu
Quant-aware training (int8) from float weights, with PACT activation clipping:
    python train.py --pact_quant --pretrained=./mobilenet_v3_small_pretrained.pdparams --lr=0.001 ...
    python tools/export_model.py --pact_quant --pretrained=OUT/latest.pdparams   # int8 inference model

At the end of training every rank logs ``param_checksum: <sha256>`` of its trainable parameters.
Under a launcher, ``--dist-init-timeout`` (300 s) bounds the rendezvous: a rank whose peers never
arrive names the master it waited for and exits 1.
Exit codes: 0 ok, 1 failed (data or model error), 2 bad arguments, 77 the device
is not available on this machine (e.g. ``--device gpu`` without CUDA).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import paddle
from paddle import nn

from mobilenetv3_tipc.cli import EXIT_OK, UnsupportedConfig, add_bool_flag, add_flag, reexec_without_pir, run_main
from mobilenetv3_tipc.data.datasets import DataError, ImageClassificationDataset, find_samples
from mobilenetv3_tipc.data.labels import write_label_file
from mobilenetv3_tipc.data.transforms import TrainTransform, eval_transform
from mobilenetv3_tipc.export import layout
from mobilenetv3_tipc.export.atomic import write_text_atomic
from mobilenetv3_tipc.hardware import cuda_available
from mobilenetv3_tipc.model import model_names
from mobilenetv3_tipc.model.checkpoint import Checkpoint, build_from_checkpoint, read_checkpoint
from mobilenetv3_tipc.model.weights import load_weights
from mobilenetv3_tipc.training import distributed as dist_utils
from mobilenetv3_tipc.training.checkpoints import checkpoint_paths, resume_from, save_checkpoint, save_weights
from mobilenetv3_tipc.training.engine import (
    Amp,
    build_loader,
    evaluate,
    param_checksum,
    recalibrate_batchnorm,
    train_one_epoch,
)
from mobilenetv3_tipc.training.profiler import ProfilerOptionsError, build_profiler, parse_profiler_options
from mobilenetv3_tipc.training.visualdl_log import VISUALDL_MISSING, log_epoch, open_writer, visualdl_available

logger = logging.getLogger("train")


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="MobileNetV3 classification training", add_help=add_help)
    add_flag(parser, "data-path", default="./data", help="data set root with train/ and val/ (default: ./data)")
    add_flag(parser, "data-layout", choices=("auto", "folder", "list"), default="auto",
             help="class folders or train_list.txt/val_list.txt (default: auto)")
    add_flag(parser, "model", default="mobilenet_v3_small", help=f"one of {', '.join(model_names())}")
    add_flag(parser, "scale", type=float, default=1.0, help="width multiplier (default: 1.0)")
    add_flag(parser, "device", default="gpu", choices=("cpu", "gpu"),
             help="cpu or gpu (default: gpu, as upstream; gpu without CUDA exits 77)")
    add_flag(parser, "batch-size", "-b", type=int, default=256, help="images per process per step")
    add_flag(parser, "epochs", type=int, default=90, help="total epochs (default: 90)")
    add_flag(parser, "workers", "-j", type=int, default=2, help="data-loading worker processes (default: 2)")
    add_flag(parser, "lr", type=float, default=0.1, help="initial learning rate (default: 0.1)")
    add_flag(parser, "momentum", type=float, default=0.9, help="SGD momentum (default: 0.9)")
    add_flag(parser, "weight-decay", "wd", type=float, default=1e-4, dest="weight_decay",
             help="L2 weight decay (default: 1e-4)")
    add_flag(parser, "lr-step-size", type=int, default=30, help="decay the lr every N epochs (default: 30)")
    add_flag(parser, "lr-gamma", type=float, default=0.1, help="lr decay factor (default: 0.1)")
    add_flag(parser, "label-smoothing", type=float, default=0.0, help="label smoothing (default: 0.0)")
    add_flag(parser, "output-dir", default=".", help="where checkpoints and logs go (default: .)")
    add_flag(parser, "pretrained", default=None, help="initial weights (.pdparams); the weights to test")
    add_flag(parser, "resume", default=None, help="continue from a checkpoint (e.g. OUT/latest.pdparams)")
    add_flag(parser, "start-epoch", type=int, default=0, help="first epoch number (default: 0)")
    add_flag(parser, "print-freq", type=int, default=10, help="log every N iterations (default: 10)")
    add_flag(parser, "seed", type=int, default=None, help="random seed for reproducible runs")
    add_flag(parser, "test-only", action="store_true", help="only evaluate --pretrained on the val split")
    add_flag(parser, "amp", action="store_true", help="mixed precision (bfloat16 on CPU, float16 on GPU)")
    add_flag(parser, "amp-level", default=None, choices=("O1", "O2"),
             help="AMP level; giving it implies --amp (default: O1)")
    add_flag(parser, "num-classes", type=int, default=None, help="classes (default: from the data set)")
    add_flag(parser, "train-crop-size", type=int, default=224, help="default: 224")
    add_flag(parser, "random-crop-scale", type=float, nargs=2, default=(0.08, 1.0), metavar=("MIN", "MAX"),
             help="area range of RandomResizedCrop (default: 0.08 1.0)")
    add_flag(parser, "val-resize-size", type=int, default=256, help="default: 256")
    add_flag(parser, "val-crop-size", type=int, default=224, help="default: 224")
    add_flag(parser, "bn-recalibration-batches", type=int, default=0, metavar="N",
             help="after each epoch, recompute BatchNorm statistics as the plain average over N "
                  "training batches (precise BN; useful for very short runs, whose running "
                  "statistics are still mostly their initial values) (default: 0 = off)")
    add_flag(parser, "pact-quant", action="store_true",
             help="quant-aware training (int8) with PACT activation clipping, from --pretrained "
                  "float weights; export with tools/export_model.py --pact_quant")
    add_flag(parser, "quant", action="store_true",
             help="quant-aware training (int8) without PACT; export with tools/export_model.py --quant")
    add_bool_flag(parser, "to-static", default=False, help="train through paddle.jit.to_static")
    add_bool_flag(parser, "to-static-full-graph", default=True,
                  help="with --to_static: convert the whole forward by AST (True) or let SOT split it where "
                       "it cannot (False)")
    add_flag(parser, "max-steps", type=int, default=None, metavar="N",
             help="stop training after N steps in all (across epochs); the epoch it stops in is still "
                  "evaluated and saved (default: no limit)")
    add_bool_flag(parser, "eval-during-train", default=True,
                  help="evaluate after every epoch (True) or after the last one only (False; benchmark runs)")
    add_flag(parser, "dist-init-timeout", type=float, default=300.0, metavar="SECONDS",
             help="bound on the distributed rendezvous (init_parallel_env): after it the trainer names "
                  "the master it waited for and exits 1 (default: 300)")
    add_bool_flag(parser, "use-visualdl", default=False,
                  help="write VisualDL logs (loss, top-1, lr per step and per epoch) to --vdl-dir; "
                       "needs the visualdl package")
    add_flag(parser, "vdl-dir", default=None, metavar="DIR",
             help="VisualDL log folder (default: OUTPUT_DIR/vdl); view with visualdl --logdir DIR")
    add_flag(parser, "profiler-options", default=None, metavar="OPTIONS",
             help='paddle.profiler with upstream\'s string, e.g. "batch_range=[10,20];state=CPU;'
                  'profile_path=model.profile" (trace and summary table under --output-dir)')
    return parser


def check_args(args: argparse.Namespace) -> None:
    """Raise argparse.ArgumentTypeError for values no run accepts."""
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
    if quant_mode_of(args) and amp_of(args).enabled:
        raise argparse.ArgumentTypeError("--pact_quant/--quant cannot be combined with --amp")
    if quant_mode_of(args) and args.to_static:
        raise argparse.ArgumentTypeError("--pact_quant/--quant cannot be combined with --to_static")
    if args.max_steps is not None and args.max_steps < 1:
        raise argparse.ArgumentTypeError("--max-steps must be at least 1")
    if args.dist_init_timeout <= 0:
        raise argparse.ArgumentTypeError("--dist-init-timeout must be more than 0 seconds")
    if args.use_visualdl and not visualdl_available():
        raise argparse.ArgumentTypeError(VISUALDL_MISSING)
    if args.profiler_options:
        try:
            parse_profiler_options(args.profiler_options)
        except ProfilerOptionsError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None


def quant_mode_of(args: argparse.Namespace) -> str | None:
    return "pact" if args.pact_quant else "qat" if args.quant else None


def amp_of(args: argparse.Namespace) -> Amp:
    """``--amp`` (or an ``--amp-level``) as auto_cast settings: float16 on GPU, bfloat16 on CPU."""
    return Amp(enabled=bool(args.amp or args.amp_level), level=args.amp_level or "O1",
               dtype="float16" if args.device == "gpu" else "bfloat16")


def write_run_info(out_dir: Path, args: argparse.Namespace, class_names: list[str], **resolved: object) -> None:
    """``args.json`` (the flags plus what was derived from them) and ``label_list.txt``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    saved = {**vars(args), **resolved, "world_size": dist_utils.world_size()}
    write_text_atomic(out_dir / "args.json", json.dumps(saved, indent=2, default=str) + "\n")
    write_label_file(out_dir / layout.LABEL_LIST, class_names)


def load_samples(args: argparse.Namespace) -> tuple[list, list, list[str]]:
    """``(train_samples, val_samples, class_names)``; no train split for ``--test-only``."""
    val_samples, class_names = find_samples(args.data_path, "val", args.data_layout)
    if args.test_only:
        return [], val_samples, class_names
    train_samples, class_names = find_samples(args.data_path, "train", args.data_layout)
    return train_samples, val_samples, class_names


def num_classes_for(args: argparse.Namespace, checkpoint: Checkpoint | None, class_names: list[str],
                    samples: list[tuple[Path, int]]) -> int:
    """``--num-classes``, else (evaluating) the checkpoint's, else the data set's; every label must fit."""
    from_weights = checkpoint.num_classes if (args.test_only and checkpoint) else None
    num_classes = args.num_classes or from_weights or len(class_names)
    too_big = max(label for _, label in samples)
    if too_big >= num_classes:
        raise DataError(f"{args.data_path}: label {too_big} does not fit --num-classes {num_classes}")
    return num_classes


def make_optimizer(args: argparse.Namespace, model: nn.Layer) -> tuple[paddle.optimizer.Optimizer,
                                                                       paddle.optimizer.lr.LRScheduler]:
    scheduler = paddle.optimizer.lr.StepDecay(args.lr, step_size=args.lr_step_size, gamma=args.lr_gamma)
    optimizer = paddle.optimizer.Momentum(
        learning_rate=scheduler, momentum=args.momentum, parameters=model.parameters(),
        weight_decay=paddle.regularizer.L2Decay(args.weight_decay),
    )
    return optimizer, scheduler


def start_device(args: argparse.Namespace) -> bool:
    """Select the device, join the process group (bounded by ``--dist-init-timeout``), seed; True when distributed."""
    if args.device == "gpu" and not cuda_available():
        raise UnsupportedConfig("--device gpu needs a CUDA build of Paddle and a GPU; use --device cpu")
    paddle.set_device(args.device)
    distributed = dist_utils.init(args.dist_init_timeout)
    if args.seed is not None:
        # all three: Paddle (weights, dropout), NumPy and Python's random (RandomResizedCrop and the
        # flip draw from both); without random.seed two runs with one --seed differ from step 3 on
        paddle.seed(args.seed + dist_utils.rank())
        np.random.seed(args.seed + dist_utils.rank())
        random.seed(args.seed + dist_utils.rank())
    return distributed


@dataclass
class Training:
    """Everything the epoch loop uses, built by :func:`prepare_training`."""

    model: nn.Layer  # the layer whose weights are saved (to_static-wrapped when asked)
    train_model: nn.Layer  # ``model``, or its DataParallel wrapper
    criterion: nn.Layer
    optimizer: paddle.optimizer.Optimizer
    scheduler: paddle.optimizer.lr.LRScheduler
    scaler: paddle.amp.GradScaler | None
    amp: Amp
    train_loader: object
    val_loader: object
    num_classes: int
    model_info: dict[str, object]
    start_epoch: int
    train_images: int
    val_images: int


def prepare_training(args: argparse.Namespace, model: nn.Layer, criterion: nn.Layer, train_samples: list,
                     val_loader: object, val_images: int, num_classes: int, distributed: bool) -> Training:
    """Train loader, optimizer, AMP, resumed state, to_static and DataParallel, in that order."""
    train_set = ImageClassificationDataset(train_samples, TrainTransform(args.train_crop_size,
                                                                         tuple(args.random_crop_scale)))
    train_loader = build_loader(train_set, args.batch_size, args.workers, train=True)
    optimizer, scheduler = make_optimizer(args, model)
    amp = amp_of(args)
    model, optimizer, scaler = setup_amp(model, optimizer, amp)
    model_info = {"model": args.model, "num_classes": num_classes, "scale": args.scale,
                  "quant_mode": quant_mode_of(args)}
    start_epoch = (resume_from(args.resume, model, optimizer, scheduler, scaler, model_info) if args.resume
                   else args.start_epoch)
    if args.to_static:
        # after the weights, before DataParallel; a forward Paddle cannot convert fails at the first
        # step with Paddle's own error (no fallback to dygraph)
        model = paddle.jit.to_static(model, full_graph=args.to_static_full_graph)
        logger.info("to_static: training through paddle.jit.to_static, %s",
                    "full graph (AST conversion)" if args.to_static_full_graph else "SOT (graph breaks allowed)")
    train_model = paddle.DataParallel(model) if distributed else model
    return Training(model, train_model, criterion, optimizer, scheduler, scaler, amp, train_loader, val_loader,
                    num_classes, model_info, start_epoch, len(train_set), val_images)


def run_epoch(args: argparse.Namespace, run: Training, epoch: int, steps_left: int | None,
              profiler: object, scalars: object) -> tuple[dict[str, float], bool, int | None]:
    """One epoch: train, step the schedule, recalibrate BN, evaluate when due; ``(stats, stop, steps_left)``."""
    stats = train_one_epoch(run.train_model, run.criterion, run.optimizer, run.train_loader, epoch,
                            num_classes=run.num_classes, print_freq=args.print_freq, amp=run.amp, scaler=run.scaler,
                            profiler=profiler, max_steps=steps_left, scalars=scalars)
    stop, steps_done = bool(stats.pop("stop")), int(stats.pop("steps"))
    if steps_left is not None:
        steps_left -= steps_done
    run.scheduler.step()
    if args.bn_recalibration_batches > 0:
        recalibrate_batchnorm(run.model, run.train_loader, args.bn_recalibration_batches)
    if args.eval_during_train or stop or epoch == args.epochs - 1:
        stats.update(evaluate(run.model, run.criterion, run.val_loader, num_classes=run.num_classes,
                              print_freq=args.print_freq))
    return stats, stop, steps_left


def save_epoch(out_dir: Path, run: Training, epoch: int, lr: float, stats: dict[str, float],
               best_acc1: float) -> float:
    """``latest`` checkpoint, ``best.pdparams`` when Acc@1 improved, a ``metrics.jsonl`` line; the best Acc@1."""
    save_checkpoint(out_dir, "latest", run.model, run.optimizer, run.scheduler, epoch, run.scaler, run.model_info)
    if "acc1" in stats and stats["acc1"] > best_acc1:
        best_acc1 = stats["acc1"]
        save_weights(run.model, out_dir / "best.pdparams")
    record = {"epoch": epoch + 1, "lr": lr, **{k: round(v, 6) for k, v in stats.items()}}
    with (out_dir / "metrics.jsonl").open("a", encoding="utf-8") as log_file:
        log_file.write(json.dumps(record) + "\n")
    return best_acc1


def fit(args: argparse.Namespace, run: Training, out_dir: Path) -> float:
    """The epoch loop with the profiler and VisualDL writer around it; the best Acc@1 (-1 without one)."""
    main_process = dist_utils.is_main_process()
    best_acc1 = -1.0
    profiler = build_profiler(args.profiler_options, out_dir, dist_utils.rank())
    if profiler is not None:
        profiler.start()
    steps_left = args.max_steps
    scalars = open_writer(Path(args.vdl_dir or out_dir / "vdl")) if args.use_visualdl and main_process else None
    start = time.time()
    logger.info("training %s (%d classes) on %d images, %d val images, epochs %d-%d, world size %d",
                args.model, run.num_classes, run.train_images, run.val_images, run.start_epoch + 1, args.epochs,
                dist_utils.world_size())
    for epoch in range(run.start_epoch, args.epochs):
        lr = run.optimizer.get_lr()
        stats, stop, steps_left = run_epoch(args, run, epoch, steps_left, profiler, scalars)
        if scalars is not None:
            log_epoch(scalars, epoch + 1, {"lr": lr, **stats})
        if main_process:
            best_acc1 = save_epoch(out_dir, run, epoch, lr, stats, best_acc1)
        if stop:
            logger.info("stopping after epoch %d: %s", epoch + 1,
                        "--max-steps reached" if steps_left == 0 else "the profiler range is recorded")
            break
    if profiler is not None:
        profiler.close()
    if scalars is not None:
        scalars.close()
    logger.info("training time %s, best Acc@1 %.3f", time.strftime("%H:%M:%S", time.gmtime(time.time() - start)),
                best_acc1)
    return best_acc1


def main(args: argparse.Namespace) -> int:
    distributed = start_device(args)
    train_samples, val_samples, class_names = load_samples(args)
    checkpoint = read_checkpoint(args.pretrained) if args.pretrained else None
    num_classes = num_classes_for(args, checkpoint, class_names, train_samples + val_samples)
    model, _ = build_from_checkpoint(args.model, checkpoint, num_classes=num_classes, scale=args.scale,
                                     quant_mode=quant_mode_of(args))
    criterion = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
    val_set = ImageClassificationDataset(val_samples, eval_transform(args.val_resize_size, args.val_crop_size))
    val_loader = build_loader(val_set, args.batch_size, args.workers, train=False)
    if args.test_only:
        if args.resume:
            load_weights(model, checkpoint_paths(args.resume)[0])
        evaluate(model, criterion, val_loader, num_classes=num_classes, print_freq=args.print_freq)
        return EXIT_OK

    run = prepare_training(args, model, criterion, train_samples, val_loader, len(val_set), num_classes, distributed)
    out_dir = Path(args.output_dir)
    if dist_utils.is_main_process():
        amp = run.amp
        write_run_info(out_dir, args, class_names, num_classes=num_classes, quant_mode=quant_mode_of(args),
                       amp=amp.enabled, amp_level=amp.level, amp_dtype=amp.dtype,
                       amp_applied=amp.enabled and args.device == "gpu", start_epoch=run.start_epoch)
    fit(args, run, out_dir)
    logger.info("param_checksum: %s", param_checksum(run.model))
    return EXIT_OK


def setup_amp(model: nn.Layer, optimizer: paddle.optimizer.Optimizer,
              amp: Amp) -> tuple[nn.Layer, paddle.optimizer.Optimizer, paddle.amp.GradScaler | None]:
    """O2 decoration and the float16 loss scaler; on CPU Paddle applies auto_cast on CUDA only."""
    if not amp.enabled:
        return model, optimizer, None
    if amp.dtype != "float16":  # not on a CUDA device
        logger.warning("AMP: Paddle %s applies auto_cast on CUDA devices only; on CPU this run trains in "
                       "float32 (recorded as amp_applied=false in args.json)", paddle.__version__)
    if amp.level == "O2":
        model, optimizer = paddle.amp.decorate(model, optimizer, level="O2", dtype=amp.dtype, save_dtype="float32")
    scaler = paddle.amp.GradScaler(init_loss_scaling=1024) if amp.dtype == "float16" else None
    return model, optimizer, scaler


def cli(argv: list[str] | None = None) -> int:
    parser = get_args_parser()
    args = parser.parse_args(argv)
    try:
        check_args(args)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    if quant_mode_of(args):
        # Paddle's quant-aware training writes legacy programs only, and the PIR switch is read
        # when paddle is imported: run again in a child process with PIR off.
        code = reexec_without_pir(__file__, argv)
        if code is not None:
            return code
    return run_main(lambda _argv: main(args), argv, log_stream=sys.stdout, bare_log=True)


if __name__ == "__main__":
    sys.exit(cli())
