"""One command for the CPU performance figures of every path, side by side.

    python -m benchmark --quick     # < 2 minutes: fewer batches, threads and runs
    python -m benchmark             # full: batch 1/8/32, 1 and 2 threads, the TIPC chain

Measures, in one run: model-only latency of dygraph, every Paddle Inference CPU
variant, the ONNX Runtime wrapper and raw onnxruntime; end-to-end JPEG bytes ->
top-5 throughput of the same paths; training images/s (Paddle dygraph and
``jit.to_static``, PyTorch eager when installed); serving throughput and p50/p99
by concurrency; the lite TIPC chain's wall time. Writes ``results.json`` and PNG
plots to ``--out`` and prints a table with each figure's ratio to the fastest path,
then the performance targets (``benchmark/report.py``) with their measured ratio, bound and status.
Random weights: the figures are speeds, not accuracies.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmark import paths, report, timing, training
from benchmark.chain import measure_chain
from benchmark.serving import format_side_by_side, measure_serving, measure_side_by_side
from mobilenetv3_tipc.cli import UsageError, run_main
from mobilenetv3_tipc.data.batching import BatchPreprocessor

logger = logging.getLogger("benchmark")

ROOT = Path(__file__).resolve().parents[1]
IMAGE = ROOT / "images" / "demo.jpg"
TRAIN_MODELS = ("mobilenet_v3_small", "mobilenet_v3_large")
SECTIONS = ("training", "serving", "chain")


@dataclass(frozen=True)
class Plan:
    threads: list[int]
    batches: list[int]
    warmup: int
    rounds: int
    runs: int  # per round at batch 1; fewer for larger batches
    train_batch: int
    train_warmup: int
    train_steps: int
    train_rounds: int
    serving_levels: list[int]
    serving_backends: list[str]
    serving_seconds: float
    chain: bool


QUICK = Plan(threads=[2], batches=[1, 8], warmup=1, rounds=2, runs=6, train_batch=8, train_warmup=1,
             train_steps=2, train_rounds=1, serving_levels=[1, 8], serving_backends=["paddle"],
             serving_seconds=3.0, chain=False)
FULL = Plan(threads=[1, 2], batches=[1, 8, 32], warmup=5, rounds=5, runs=16, train_batch=32, train_warmup=1,
            train_steps=3, train_rounds=2, serving_levels=[1, 4, 8, 16], serving_backends=["paddle", "onnxruntime"],
            serving_seconds=10.0, chain=True)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmark", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer batches, threads and runs (< 2 minutes)")
    parser.add_argument("--out", default="benchmark/results",
                        help="results.json and PNG plots go here (default: %(default)s)")
    parser.add_argument("--model", default="mobilenet_v3_small", help="inference model (default: %(default)s)")
    parser.add_argument("--include-chain", action="store_true", help="also time the lite TIPC chain in --quick mode")
    parser.add_argument("--skip", default="", help=f"comma-separated sections to leave out: {', '.join(SECTIONS)}")
    return parser


def runs_for(plan: Plan, batch: int) -> int:
    return max(4, plan.runs // batch) if batch > 1 else plan.runs


def engine_name(line: str) -> str:
    """``openvino`` from ``inference engine: openvino (...)``; other descriptions as they are."""
    match = re.match(r"inference engine: (\S+) \(", line)
    return match[1] if match else line


def measure_inference(plan: Plan, files: paths.ModelFiles, jpeg: bytes, results: dict) -> None:
    """Model-only figures at every thread count and batch; end-to-end figures at the largest thread count."""
    rng = np.random.default_rng(0)
    inputs = {b: rng.standard_normal((b, 3, 224, 224), dtype=np.float32) for b in plan.batches}
    for threads in plan.threads:
        runners = {}
        for name in paths.PATHS:
            try:
                runners[name], engine = paths.build_path(name, files, threads)
            except paths.PathUnavailable as exc:
                logger.warning("%s: unavailable (%s)", name, exc)
                results["model_only"][name] = {"unavailable": str(exc)}
                continue
            results["meta"]["engine_lines"][f"{name}/t{threads}"] = engine
            results["meta"]["engines"][name] = engine_name(engine)
        reference = runners["dygraph"](inputs[plan.batches[-1]])
        for name, run in runners.items():
            diff = float(np.abs(run(inputs[plan.batches[-1]]) - reference).max())
            results["meta"]["max_abs_diff_vs_dygraph"][name] = max(
                diff, results["meta"]["max_abs_diff_vs_dygraph"].get(name, 0.0))
        for batch in plan.batches:
            calls = {name: (lambda run=run, x=inputs[batch]: run(x)) for name, run in runners.items()}
            samples = timing.interleaved(calls, warmup=plan.warmup, rounds=plan.rounds, runs=runs_for(plan, batch))
            for name, secs in samples.items():
                fig = timing.summarize(secs, batch)
                results["model_only"].setdefault(name, {}).setdefault(f"t{threads}", {})[f"b{batch}"] = fig
                logger.info("model-only %-16s threads %d batch %2d: %8.2f ms/image", name, threads, batch,
                            fig["ms_per_image"])
        if threads == max(plan.threads):
            measure_end_to_end(plan, runners, jpeg, threads, results)
        del runners
    samples = timing.interleaved(paths.preprocess_stages(jpeg), warmup=2, rounds=plan.rounds, runs=plan.runs,
                                 settle_s=0.0)
    results["preprocess_ms"] = {stage: timing.summarize(secs)["median_ms"] for stage, secs in samples.items()}
    logger.info("preprocessing one %s: %s ms", IMAGE.name, results["preprocess_ms"])


def measure_end_to_end(plan: Plan, runners: dict[str, paths.Runner], jpeg: bytes, threads: int,
                       results: dict) -> None:
    """JPEG -> top-5 throughput per path and batch (pipelined, as infer.py); one-image latency of the deploy paths."""
    with BatchPreprocessor() as preprocessor:
        results["meta"]["preprocess_workers"] = preprocessor.workers
        for batch in plan.batches:
            stream = max(2, 16 // batch)  # batches per call: the pipeline overlaps batch i+1 with batch i
            calls = {name: paths.end_to_end(run, jpeg, batch, preprocessor, stream) for name, run in runners.items()}
            # The same stream without a model: with the model-only figure, the CPU ceiling of target 3.
            calls["preprocess-only"] = paths.end_to_end(None, jpeg, batch, preprocessor, stream)
            samples = timing.interleaved(calls, warmup=1, rounds=plan.rounds, runs=2)
            for name, secs in samples.items():
                fig = timing.summarize(secs, batch * stream)
                if name == "preprocess-only":
                    results["preprocess_only"][f"b{batch}"] = fig
                    logger.info("preprocessing only (%d workers) batch %2d: %8.1f images/s", preprocessor.workers,
                                batch, fig["images_per_s"])
                    continue
                results["end_to_end"].setdefault(name, {}).setdefault(f"t{threads}", {})[f"b{batch}"] = fig
                logger.info("end-to-end %-16s batch %2d: %8.1f images/s", name, batch, fig["images_per_s"])
    calls = {name: paths.single_image(runners[name], jpeg) for name in report.DEPLOY_PATHS if name in runners}
    samples = timing.interleaved(calls, warmup=2, rounds=plan.rounds, runs=plan.runs)
    for name, secs in samples.items():
        results["single_image_latency"][name] = timing.summarize(secs)
        logger.info("one image, JPEG -> top-5 %-16s %6.2f ms", name, results["single_image_latency"][name]["median_ms"])


def measure_training(plan: Plan, results: dict) -> None:
    threads = max(plan.threads)
    frameworks = ["paddle"] + (["torch"] if training.torch_available() else [])
    if "torch" not in frameworks:
        results["training"]["torch-eager/mobilenet_v3_small"] = "unavailable: torch/torchvision not installed"
    rounds: dict[str, list[dict]] = {}
    for _ in range(plan.train_rounds):  # frameworks alternate, one child process each
        for framework in frameworks:
            static = ["mobilenet_v3_small"] if framework == "paddle" else []
            figures = training.run_child(framework, list(TRAIN_MODELS), plan.train_batch, threads,
                                         plan.train_warmup, plan.train_steps, static)
            for key, fig in figures.items():
                rounds.setdefault(key, []).append(fig)
                logger.info("training %-36s %6.2f images/s", key, fig["images_per_s"])
    for key, figs in rounds.items():
        # Best round: a training step is long, so another process's burst can ruin a whole round
        # (PyTorch's OpenMP barriers suffer most when a core is taken); both frameworks get the same rule.
        best = max(figs, key=lambda f: f["images_per_s"])
        results["training"][key] = {**best, "rounds": [f["images_per_s"] for f in figs], "batch": plan.train_batch}


def run(argv: list[str] | None) -> int:
    args = get_args_parser().parse_args(argv)
    plan = QUICK if args.quick else FULL
    skip = {s for s in args.skip.split(",") if s}
    if skip - set(SECTIONS):
        raise UsageError(f"--skip: unknown section(s) {', '.join(skip - set(SECTIONS))}; "
                         f"expected {', '.join(SECTIONS)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    import onnxruntime
    import paddle

    results: dict = {
        "meta": {"mode": "quick" if args.quick else "full", "model": args.model, "threads": plan.threads,
                 "batches": plan.batches, "train_batch": plan.train_batch, "image": IMAGE.name,
                 "platform": platform.platform(), "python": platform.python_version(),
                 "paddle": paddle.__version__, "onnxruntime": onnxruntime.__version__,
                 "load_average_start": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count(),
                 "weights": "random", "engines": {}, "engine_lines": {}, "max_abs_diff_vs_dygraph": {}},
        "model_only": {}, "end_to_end": {}, "preprocess_only": {}, "single_image_latency": {}, "training": {},
        "serving": {}, "chain": {},
    }
    jpeg = IMAGE.read_bytes()
    with tempfile.TemporaryDirectory(prefix="benchmark_") as tmp:
        work = Path(tmp)
        logger.info("exporting %s (random weights) and converting it to ONNX", args.model)
        files = paths.prepare_model(args.model, work / args.model)
        measure_inference(plan, files, jpeg, results)
        if "training" not in skip:
            measure_training(plan, results)
        if "serving" not in skip:
            for backend in plan.serving_backends:
                model = files.infer_dir if backend == "paddle" else files.onnx_file
                results["serving"][backend] = measure_serving(
                    model, backend, jpeg, plan.serving_levels, threads=max(plan.threads), requests=2000,
                    duration=plan.serving_seconds, warmup=8, log_file=out / f"server_{backend}.log")
            results["serving_side_by_side"] = measure_side_by_side(  # ours vs real Paddle Serving
                files.infer_dir, jpeg, plan.serving_levels, threads=max(plan.threads), requests=2000,
                duration=plan.serving_seconds, warmup=8, out=out)
    if (plan.chain or args.include_chain) and "chain" not in skip:
        results["chain"] = measure_chain()
    else:
        results["chain"] = {"skipped": "quick mode (add --include-chain)" if args.quick else "--skip chain"}
    results["targets"] = report.evaluate_targets(results)
    results["meta"]["wall_s"] = round(time.perf_counter() - started, 1)
    results["meta"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    report.write_json(results, out)
    written = report.write_plots(results, out)
    table = report.format_table(results)
    (out / "table.txt").write_text(table + "\n", encoding="utf-8")
    (out / "summary.md").write_text(report.format_markdown(results) + "\n", encoding="utf-8")
    print(table)
    if "serving_side_by_side" in results:
        print("\n" + format_side_by_side(results["serving_side_by_side"]))
    print(f"\nwrote {out / 'results.json'}, {', '.join(p.name for p in written)} "
          f"in {results['meta']['wall_s']:.0f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(run, argv)


if __name__ == "__main__":
    sys.exit(main())
