"""The dynamic-to-static check: the per-step losses of a dygraph and a ``--to_static`` run compared.

Both runs are ``train.py ... --seed S --print-freq 1`` with the same data order, so every
``[Epoch e, iter: i] ... loss: L`` line is one step. Measured on this project's CPU build
(Paddle 3.3.1, MobileNetV3 small and large, 8 steps at batch 4 on lite data, dropout 0.2 on):
dygraph, ``to_static(full_graph=True)`` and SOT give **bit-identical** losses at 1 and at 2
threads (Paddle's dropout draws from the same generator in both modes). So the default
tolerance, 1e-4 absolute on losses logged with 5 decimals, is loose only by the printing; a real
divergence (a different seed, augmentation or learning rate) moves the loss by 1e-3 or more
within the first steps.

Speed: per-run ips from :mod:`mobilenetv3_tipc.tipc.speed_log`, leaving out the first
``skip_steps`` steps (the ``to_static`` program is built in step 1: +1.1 s full graph,
+2.2 s SOT for small; afterwards both run the same kernels, so ips match within noise).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from mobilenetv3_tipc.cli import EXIT_FAILED, EXIT_OK, UsageError, add_flag, run_main
from mobilenetv3_tipc.tipc.speed_log import SpeedLogError, parse_spec, parse_train_log, speed_from_log

logger = logging.getLogger(__name__)

DEFAULT_TOLERANCE = 1e-4
RESULT_NAME = "dy2static_compare.json"


def step_losses(text: str, where: str) -> list[float]:
    """One loss per step; the log must have been written with ``--print-freq 1``."""
    lines = parse_train_log(text)
    if not lines:
        raise SpeedLogError(f"{where}: no '[Epoch e, iter: i] ... loss: ...' lines (did training start?)")
    wide = [line for line in lines if line.steps != 1]
    if wide:
        raise SpeedLogError(f"{where}: [Epoch {wide[0].epoch}, iter: {wide[0].iteration}] averages "
                            f"{wide[0].steps} steps; run both trainings with --print-freq 1")
    return [line.loss for line in lines]


@dataclass
class Comparison:
    passed: bool
    steps: int
    tolerance: float
    max_abs_diff: float
    first_bad_step: int | None
    message: str
    dygraph_losses: list[float]
    static_losses: list[float]
    dygraph_ips: float | None = None
    static_ips: float | None = None


def compare(dygraph: list[float], static: list[float], tolerance: float = DEFAULT_TOLERANCE) -> Comparison:
    """Pass when both runs logged the same steps and every |loss difference| <= tolerance."""
    if not tolerance >= 0:
        raise UsageError(f"tolerance must be 0 or more, got {tolerance}")
    shared = min(len(dygraph), len(static))
    diffs = [abs(dygraph[i] - static[i]) if math.isfinite(dygraph[i]) and math.isfinite(static[i]) else math.inf
             for i in range(shared)]
    worst = max(diffs, default=0.0)
    bad = next((i for i, d in enumerate(diffs) if d > tolerance), None)
    if len(dygraph) != len(static):
        message = (f"the runs logged different numbers of steps: dygraph {len(dygraph)}, "
                   f"to_static {len(static)}")
        passed = False
    elif not dygraph:
        message, passed = "no steps to compare", False
    elif bad is not None:
        message = (f"losses diverge at step {bad + 1}: dygraph {dygraph[bad]:.5f}, to_static {static[bad]:.5f} "
                   f"(|diff| {diffs[bad]:.2e} > tolerance {tolerance:.0e}); max |diff| {worst:.2e}")
        passed = False
    else:
        message = f"{shared} steps, max |loss diff| {worst:.2e} <= tolerance {tolerance:.0e}"
        passed = True
    return Comparison(passed, shared, tolerance, worst, None if bad is None else bad + 1, message,
                      list(dygraph), list(static))


def compare_logs(dygraph_log: Path, static_log: Path, tolerance: float = DEFAULT_TOLERANCE,
                 model: str = "model", batch_size: int = 1, skip_steps: int = 1) -> Comparison:
    texts = []
    for path in (dygraph_log, static_log):
        try:
            texts.append(path.read_text(encoding="utf-8", errors="replace"))
        except OSError as exc:
            raise UsageError(f"{path}: {exc.strerror}") from None
    result = compare(step_losses(texts[0], str(dygraph_log)), step_losses(texts[1], str(static_log)), tolerance)
    for attr, text, model_type in (("dygraph_ips", texts[0], "dynamic"), ("static_ips", texts[1], "dynamicTostatic")):
        combo = parse_spec(f"{model_type}_bs{batch_size}_fp32_DP_N1C1")
        try:
            setattr(result, attr, speed_from_log(text, model, combo, skip_steps).ips)
        except SpeedLogError as exc:  # too few steps to leave out the warm-up: speed unknown, losses still count
            logger.warning("%s", exc)
    return result


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="compare the per-step losses of a dygraph and a to_static run")
    add_flag(parser, "dygraph-log", required=True, help="train.py log of the dygraph run (--print-freq 1)")
    add_flag(parser, "static-log", required=True, help="train.py log of the --to_static run (--print-freq 1)")
    add_flag(parser, "tolerance", type=float, default=DEFAULT_TOLERANCE,
             help=f"largest allowed |loss difference| per step (default: {DEFAULT_TOLERANCE})")
    add_flag(parser, "model", default="model", help="model name for the speed figures")
    add_flag(parser, "batch-size", type=int, default=1, help="batch size of both runs (speed figures)")
    add_flag(parser, "skip-steps", type=int, default=1, help="warm-up steps left out of the speed (default: 1)")
    add_flag(parser, "out", default=None, help=f"write the comparison as JSON here (e.g. {RESULT_NAME})")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    result = compare_logs(Path(args.dygraph_log), Path(args.static_log), args.tolerance, args.model,
                          args.batch_size, args.skip_steps)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(asdict(result), indent=2) + "\n", encoding="utf-8")
    speed = f"; ips dygraph {result.dygraph_ips}, to_static {result.static_ips} images/s"
    print(("PASS: " if result.passed else "FAIL: ") + result.message + speed, flush=True)
    return EXIT_OK if result.passed else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(run_main(main))
