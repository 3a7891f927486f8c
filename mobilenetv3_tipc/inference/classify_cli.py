"""What the two image-classification CLIs (Paddle Inference, ONNX Runtime) share.

Their flags for images, batching, sizes and timing; one run: list the images, classify them in
batches, print each result in the caller's format, print the engine line and, with
``--benchmark``, the AutoLog-style timing report.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from mobilenetv3_tipc.cli import EXIT_FAILED, EXIT_OK, UsageError, add_bool_flag, add_flag
from mobilenetv3_tipc.data.preprocess import CROP_SIZE, RESIZE_SIZE, list_images
from mobilenetv3_tipc.inference.base import Predictor
from mobilenetv3_tipc.inference.batch_classifier import ImageResult, classify_images
from mobilenetv3_tipc.inference.timing_report import StageTimer, format_report


def add_classify_flags(parser: argparse.ArgumentParser) -> None:
    add_flag(parser, "img-path", default="./images/demo.jpg",
             help="an image file, a folder, or a folder of class folders (default: %(default)s)")
    add_flag(parser, "batch-size", type=int, default=1, help="images per run (default: 1)")
    add_bool_flag(parser, "benchmark", default=False, help="print a timing report")
    add_flag(parser, "warmup", type=int, default=0, help="batches run before timing starts (default: 0)")
    add_flag(parser, "topk", type=int, default=1, help="also print the top-k classes when > 1")
    add_flag(parser, "resize-size", type=int, default=RESIZE_SIZE, help="default: %(default)s")
    add_flag(parser, "crop-size", type=int, default=CROP_SIZE, help="default: %(default)s")


def check_classify_args(args: argparse.Namespace) -> None:
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.topk < 1 or args.warmup < 0:
        raise UsageError("--topk must be >= 1 and --warmup >= 0")


def classify_and_print(
    predictor: Predictor,
    images: list[Path],
    args: argparse.Namespace,
    print_result: Callable[[ImageResult], None],
    *,
    header: str | None = None,
    label_dir: Path,
    runtime: str,
    model_dir: str,
    precision: str,
) -> int:
    """Classify ``images`` with ``predictor`` as ``args`` say; 1 when an image could not be decoded."""
    print(predictor.engine_line(), flush=True)
    if header:
        print(header)
    timer = StageTimer(warmup=args.warmup)
    results, failed = classify_images(
        images, predictor.run, timer, batch_size=args.batch_size, resize_size=args.resize_size,
        crop_size=args.crop_size, k=args.topk, label_dir=label_dir,
    )
    for result in results:
        print_result(result)
    if args.benchmark:
        print(format_report(
            timer, runtime=runtime, model_name="mobilenet_v3", model_dir=model_dir, precision=precision,
            batch_size=args.batch_size, config=predictor.describe(),
            input_shape=f"[{args.batch_size}, 3, {args.crop_size}, {args.crop_size}]",
        ))
    return EXIT_FAILED if failed else EXIT_OK


__all__ = ["add_classify_flags", "check_classify_args", "classify_and_print", "list_images"]
