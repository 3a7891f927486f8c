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
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from deploy.options import EXIT_FAILED, EXIT_UNSUPPORTED, EXIT_USAGE, UnsupportedConfig  # noqa: E402
from vision.preprocess import list_images, preprocess_batch  # noqa: E402

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
    parser.add_argument("--float-model-dir", "--float_model_dir", required=True, help="float inference model")
    parser.add_argument("--int8-model-dir", "--int8_model_dir", required=True, help="quantized inference model")
    parser.add_argument("--img-path", "--img_path", required=True, help="an image file or a folder")
    parser.add_argument("--batch-size", "--batch_size", type=int, default=8, help="default: 8")
    parser.add_argument("--cpu-threads", "--cpu_threads", type=int, default=0, help="default: 0 = all cores")
    parser.add_argument("--min-top1-agreement", "--min_top1_agreement", type=float, default=0.75,
                        help="fail below this fraction of equal top-1 classes (default: 0.75)")
    parser.add_argument("--max-mean-abs-diff", "--max_mean_abs_diff", type=float, default=0.02,
                        help="fail above this mean |float prob - int8 prob| (default: 0.02)")
    parser.add_argument("--latency-batch-sizes", "--latency_batch_sizes", type=int, nargs="*", default=[1, 8],
                        help="batch sizes to time (default: 1 8)")
    parser.add_argument("--latency-runs", "--latency_runs", type=int, default=20,
                        help="timed runs per model and batch size, after 3 warm-up runs; 0 = no timing "
                             "(default: 20)")
    return parser


def median_ms(run: Callable[[np.ndarray], np.ndarray], batch: np.ndarray, runs: int) -> float:
    """Median wall time of ``run(batch)`` in ms over ``runs`` calls after 3 warm-up calls."""
    for _ in range(3):
        run(batch)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run(batch)
        times.append(1000.0 * (time.perf_counter() - start))
    return statistics.median(times)


def model_bytes(model_dir: Path) -> int:
    from deploy.inference_python.predictor import find_model_files

    return sum(path.stat().st_size for path in find_model_files(model_dir))


def compare(args: argparse.Namespace) -> Comparison:
    from deploy.inference_python.predictor import InferenceOptions, PaddlePredictor

    images = list_images(args.img_path)
    fp32 = PaddlePredictor(args.float_model_dir, InferenceOptions(cpu_threads=args.cpu_threads, precision="fp32"))
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
            latency[size] = (median_ms(fp32.run, batch, args.latency_runs),
                             median_ms(int8.run, batch, args.latency_runs))
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


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = get_args_parser().parse_args(argv)
    if args.batch_size < 1:
        logger.error("--batch-size must be at least 1, got %d", args.batch_size)
        return EXIT_USAGE
    if args.latency_runs < 0 or any(size < 1 for size in args.latency_batch_sizes):
        logger.error("--latency-runs must be 0 or more and --latency-batch-sizes at least 1")
        return EXIT_USAGE
    try:
        result = compare(args)
    except UnsupportedConfig as exc:
        print(f"SKIPPED: {exc}", file=sys.stderr)
        return EXIT_UNSUPPORTED
    except (FileNotFoundError, ValueError) as exc:
        logger.error("%s", exc)
        return EXIT_USAGE
    except RuntimeError as exc:
        logger.error("inference failed: %s", exc)
        return EXIT_FAILED
    print(format_comparison(result))
    ok = True
    if result.top1_agreement < args.min_top1_agreement:
        logger.error("top-1 agreement %.4f is below the bound %.4f", result.top1_agreement, args.min_top1_agreement)
        ok = False
    if result.mean_abs_diff > args.max_mean_abs_diff:
        logger.error("mean |dprob| %.6f is above the bound %.6f", result.mean_abs_diff, args.max_mean_abs_diff)
        ok = False
    print("PASS: int8 agrees with float within the bounds" if ok else "FAIL: int8 disagrees with float")
    return 0 if ok else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
