"""Float vs int8 gate: the same images through both Paddle Inference models.

    python deploy/ptq_python/compare_int8.py --float-model-dir ./inference/float \
        --int8-model-dir ./inference/int8 --img-path ./lite_data/val --min-top1-agreement 0.75

Prints the number of images, top-1 agreement, mean and max |Δprob| (over all classes), the
model file sizes and the model-only latency of both at batch 1 and 8 (median of
``--latency-runs`` timed runs after warm-up; ``--latency-runs 0`` skips it). The float model
runs in fp32 (oneDNN), the int8 one with ``--precision int8`` on oneDNN. Exit codes: 0 within
the bounds, 1 outside them (or a run failed), 2 bad arguments or missing files, 77 this machine
cannot run int8 (printed as ``SKIPPED: reason``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mobilenetv3_tipc.cli import EXIT_FAILED, EXIT_OK, UsageError, add_flag, run_main
from mobilenetv3_tipc.data.preprocess import list_images, preprocess_batch
from mobilenetv3_tipc.export.layout import find_model_files
from mobilenetv3_tipc.inference.timing_report import median_ms

logger = logging.getLogger("compare_int8")


@dataclass(frozen=True)
class Comparison:
    images: int
    top1_agreement: float
    mean_abs_diff: float
    max_abs_diff: float
    float_bytes: int
    int8_bytes: int
    # batch size -> (float ms, int8 ms) per batch, model only
    latency_ms: dict[int, tuple[float, float]] = field(default_factory=dict)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flag(parser, "float-model-dir", required=True, help="float inference model")
    add_flag(parser, "int8-model-dir", required=True, help="quantized inference model")
    add_flag(parser, "img-path", required=True, help="an image file or a folder")
    add_flag(parser, "batch-size", type=int, default=8, help="default: 8")
    add_flag(parser, "cpu-threads", type=int, default=0, help="default: 0 = all cores")
    add_flag(parser, "min-top1-agreement", type=float, default=0.75,
             help="fail below this fraction of equal top-1 classes (default: 0.75)")
    add_flag(parser, "max-mean-abs-diff", type=float, default=0.02,
             help="fail above this mean |float prob - int8 prob| (default: 0.02)")
    add_flag(parser, "latency-batch-sizes", type=int, nargs="*", default=[1, 8],
             help="batch sizes to time (default: 1 8)")
    add_flag(parser, "latency-runs", type=int, default=20,
             help="timed runs per model and batch size, after 3 warm-up runs; 0 = no timing "
                  "(default: 20)")
    return parser


def model_bytes(model_dir: Path) -> int:
    return sum(path.stat().st_size for path in find_model_files(model_dir))


def compare(args: argparse.Namespace) -> Comparison:
    from mobilenetv3_tipc.inference.paddle_predictor import InferenceOptions, PaddlePredictor

    images = list_images(args.img_path)
    fp32 = PaddlePredictor(args.float_model_dir, InferenceOptions(cpu_threads=args.cpu_threads, precision="fp32",
                                                                  enable_mkldnn=True))
    int8 = PaddlePredictor(args.int8_model_dir, InferenceOptions(cpu_threads=args.cpu_threads, precision="int8",
                                                                  enable_mkldnn=True))
    float_probs, int8_probs = [], []
    for start in range(0, len(images), args.batch_size):
        batch = preprocess_batch(images[start:start + args.batch_size])
        float_probs.append(fp32.run(batch))
        int8_probs.append(int8.run(batch))
    f = np.concatenate(float_probs)
    q = np.concatenate(int8_probs)
    diff = np.abs(f - q)
    latency: dict[int, tuple[float, float]] = {}
    if args.latency_runs > 0:
        first = preprocess_batch(images[:1])
        for size in args.latency_batch_sizes:
            batch = np.repeat(first, size, axis=0)
            latency[size] = (median_ms(lambda b=batch: fp32.run(b), args.latency_runs),
                             median_ms(lambda b=batch: int8.run(b), args.latency_runs))
    return Comparison(
        images=len(images),
        top1_agreement=float((f.argmax(axis=1) == q.argmax(axis=1)).mean()),
        mean_abs_diff=float(diff.mean()),
        max_abs_diff=float(diff.max()),
        float_bytes=model_bytes(Path(args.float_model_dir)),
        int8_bytes=model_bytes(Path(args.int8_model_dir)),
        latency_ms=latency,
    )


def format_comparison(c: Comparison) -> str:
    return "\n".join([
        f"images: {c.images}",
        f"top-1 agreement: {c.top1_agreement:.4f} ({round(c.top1_agreement * c.images)}/{c.images})",
        f"mean |dprob|: {c.mean_abs_diff:.6f}",
        f"max |dprob|: {c.max_abs_diff:.6f}",
        f"float model size: {c.float_bytes / 1e6:.2f} MB",
        f"int8 model size: {c.int8_bytes / 1e6:.2f} MB ({c.int8_bytes / c.float_bytes:.2f}x)",
        *(f"latency batch {size}: float {f:.2f} ms, int8 {q:.2f} ms ({q / f:.2f}x), model only, median"
          for size, (f, q) in c.latency_ms.items()),
    ])


def run(argv: list[str] | None) -> int:
    args = get_args_parser().parse_args(argv)
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.latency_runs < 0 or any(size < 1 for size in args.latency_batch_sizes):
        raise UsageError("--latency-runs must be 0 or more and --latency-batch-sizes at least 1")
    result = compare(args)
    print(format_comparison(result))
    ok = True
    if result.top1_agreement < args.min_top1_agreement:
        logger.error("top-1 agreement %.4f is below the bound %.4f", result.top1_agreement, args.min_top1_agreement)
        ok = False
    if result.mean_abs_diff > args.max_mean_abs_diff:
        logger.error("mean |dprob| %.6f is above the bound %.6f", result.mean_abs_diff, args.max_mean_abs_diff)
        ok = False
    print("PASS: int8 agrees with float within the bounds" if ok else "FAIL: int8 disagrees with float")
    return EXIT_OK if ok else EXIT_FAILED


def main(argv: list[str] | None = None) -> int:
    return run_main(run, argv, usage_errors=(FileNotFoundError, ValueError))


if __name__ == "__main__":
    sys.exit(main())
