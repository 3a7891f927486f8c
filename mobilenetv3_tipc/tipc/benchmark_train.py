"""The ``benchmark_train`` matrix: what each combination runs, or why it cannot run here.

Reads the ``train_benchmark_params`` section (upstream's keys plus three of ours)::

    batch_size:8|16                      images per process per step (one run each)
    fp_items:fp32|fp16                   precision; anything but fp32 needs CUDA (train.py's --amp
                                         applies auto_cast on CUDA only, so on CPU it would be fp32)
    epoch:1                              upper bound of epochs; max_steps ends the run first
    model_type:norm_train|to_static_train  dygraph and paddle.jit.to_static (also dynamic|dynamicTostatic)
    num_workers:0                        --workers
    --profiler_options:batch_range=[10,20];state=CPU;...   one extra profiling run (first runnable combination)
    flags:FLAGS_a=1;FLAGS_b=2            environment of every training process
    device_num:N1C1|N1C2                 (ours) device layouts; upstream passes them on the command line only
    max_steps:20                         (ours) training steps per combination
    skip_steps:5                         (ours) warm-up steps left out of the speed figures
    data_path:./benchmark_data           (ours) the data set of the benchmark runs; ``prepare.sh ...
                                         benchmark_train`` builds it with :func:`make_benchmark_data`

Device layouts: ``N1C<c>`` on CPU is ``c`` processes over gloo
(``python -m paddle.distributed.launch --nproc_per_node c``), on a GPU machine ``c`` GPUs;
``N<n>C<c>`` with ``n > 1`` needs ``n`` hosts and is skipped. This module is stdlib only; the engine
supplies the values (``mobilenetv3_tipc.tipc.config``) and runs the commands.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from mobilenetv3_tipc.cli import EXIT_OK, UsageError, add_flag, run_main
from mobilenetv3_tipc.tipc.speed_log import MODEL_TYPES, PRECISIONS, Combination, parse_spec

SECTION = "train_benchmark_params"
MODEL_TYPE_ALIASES = {"norm_train": "dynamic", "to_static_train": "dynamicTostatic",
                      "dynamic": "dynamic", "dynamicTostatic": "dynamicTostatic"}
DEVICE_RE = re.compile(r"^N(\d+)C(\d+)$")
FLAG_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=.*$")
DEFAULT_MAX_STEPS = 20
DEFAULT_SKIP_STEPS = 5
MARKER = ".tipc_benchmark_data"
DEFAULT_REPEAT = 16  # lite_data's 16 training images -> 256: every batch size up to 128 fills N1C2
# precision -> train.py flags on a CUDA machine (upstream's func_set_amp_params, in our flags)
PRECISION_FLAGS = {"fp32": [], "fp16": ["--amp", "--amp-level", "O1"], "amp": ["--amp", "--amp-level", "O1"],
                   "amp_o2": ["--amp", "--amp-level", "O2"], "bf16": ["--amp", "--amp-level", "O1"]}


class BenchmarkConfigError(ValueError):
    """A bad ``train_benchmark_params`` value; ``where(key)`` puts FILE:LINE in front."""


@dataclass(frozen=True)
class BenchmarkParams:
    batch_sizes: tuple[int, ...]
    fp_items: tuple[str, ...]
    model_types: tuple[str, ...]
    device_nums: tuple[str, ...] = ("N1C1",)
    epochs: int = 1
    num_workers: int | None = None
    profiler_options: str | None = None
    flags: dict[str, str] = field(default_factory=dict)
    max_steps: int = DEFAULT_MAX_STEPS
    skip_steps: int = DEFAULT_SKIP_STEPS
    data_path: str | None = None

    def combinations(self) -> list[Combination]:
        return [Combination(model_type, bs, fp, "DP", device)
                for model_type in self.model_types for bs in self.batch_sizes
                for fp in self.fp_items for device in self.device_nums]


def _is_null(value: str | None) -> bool:
    return value is None or value.strip() == "" or value.strip().lower() in ("null", "none")


def _items(value: str) -> list[str]:
    return [v.strip() for v in value.split("|") if v.strip()]


def _positive_int(key: str, text: str, where: Callable[[str], str], minimum: int = 1) -> int:
    try:
        number = int(text)
    except ValueError:
        raise BenchmarkConfigError(f"{where(key)}: {key} must be an integer, got {text!r}") from None
    if number < minimum:
        raise BenchmarkConfigError(f"{where(key)}: {key} must be at least {minimum}, got {number}")
    return number


def parse_params(values: Mapping[str, str], where: Callable[[str], str] = lambda key: SECTION) -> BenchmarkParams:
    """``values``: the section's ``key -> value`` (``--profiler_options`` keyed without dashes or as is)."""
    known = {"batch_size", "fp_items", "epoch", "model_type", "num_workers", "profiler_options", "flags",
             "device_num", "max_steps", "skip_steps", "data_path"}
    norm = {key.lstrip("-").replace("-", "_"): (key, value) for key, value in values.items()}
    for name, (key, _) in norm.items():
        if name not in known:
            raise BenchmarkConfigError(f"{where(key)}: unknown key {key!r} in {SECTION} "
                                       f"(keys: {', '.join(sorted(known))})")

    def get(name: str) -> tuple[str, str | None]:
        key, value = norm.get(name, (name, None))
        return key, None if _is_null(value) else value.strip()

    key, value = get("batch_size")
    if value is None:
        raise BenchmarkConfigError(f"{where(key)}: {SECTION} needs batch_size (e.g. batch_size:8|16)")
    batch_sizes = tuple(_positive_int(key, v, where) for v in _items(value))
    key, value = get("fp_items")
    fp_items = tuple(_items(value)) if value else ("fp32",)
    for fp in fp_items:
        if fp not in PRECISIONS:
            raise BenchmarkConfigError(f"{where(key)}: fp_items value {fp!r} is not one of {', '.join(PRECISIONS)}")
    key, value = get("model_type")
    model_types = []
    for item in _items(value) if value else ["norm_train"]:
        if item not in MODEL_TYPE_ALIASES:
            raise BenchmarkConfigError(f"{where(key)}: model_type {item!r} is not one of "
                                       f"{', '.join(MODEL_TYPE_ALIASES)}")
        model_types.append(MODEL_TYPE_ALIASES[item])
    key, value = get("device_num")
    device_nums = tuple(_items(value)) if value else ("N1C1",)
    for device in device_nums:
        match = DEVICE_RE.match(device)
        if not match or int(match.group(1)) < 1 or int(match.group(2)) < 1:
            raise BenchmarkConfigError(f"{where(key)}: device_num {device!r} is not N<nodes>C<cards> (e.g. N1C2)")
    key, value = get("epoch")
    epochs = _positive_int(key, value, where) if value else 1
    key, value = get("num_workers")
    workers = _positive_int(key, value, where, minimum=0) if value else None
    key, value = get("max_steps")
    max_steps = _positive_int(key, value, where) if value else DEFAULT_MAX_STEPS
    key, value = get("skip_steps")
    skip_steps = _positive_int(key, value, where, minimum=0) if value else min(DEFAULT_SKIP_STEPS, max_steps - 1)
    if skip_steps >= max_steps:
        raise BenchmarkConfigError(f"{where(key)}: skip_steps ({skip_steps}) must be less than max_steps "
                                   f"({max_steps}), or no step is measured")
    key, value = get("flags")
    flags: dict[str, str] = {}
    for item in (value or "").split(";"):
        item = item.strip()
        if not item:
            continue
        if not FLAG_RE.match(item):
            raise BenchmarkConfigError(f"{where(key)}: flags item {item!r} is not NAME=VALUE")
        name, _, flag_value = item.partition("=")
        flags[name] = flag_value
    key, value = get("profiler_options")
    if value is not None:
        from mobilenetv3_tipc.training.profiler import ProfilerOptionsError, parse_profiler_options

        try:
            parse_profiler_options(value)
        except ProfilerOptionsError as exc:
            raise BenchmarkConfigError(f"{where(key)}: {exc}") from None
    profiler_options = value
    _, data_path = get("data_path")
    return BenchmarkParams(batch_sizes, fp_items, tuple(dict.fromkeys(model_types)), device_nums, epochs, workers,
                           profiler_options, flags, max_steps, skip_steps, data_path)


@dataclass(frozen=True)
class PlannedRun:
    """One combination: the extra train.py flags and the launcher, or why it is skipped."""

    combo: Combination
    train_flags: tuple[str, ...] = ()
    nproc: int = 1
    skip_reason: str = ""
    hardware: bool = True  # a skip for missing hardware (GPU, hosts), not a harness decision

    @property
    def runnable(self) -> bool:
        return not self.skip_reason


def select(params: BenchmarkParams, specs: Sequence[str]) -> list[Combination]:
    """The combinations to run: the command line's run-mode specs, else the config's whole matrix."""
    if not specs:
        return params.combinations()
    combos = []
    for spec in specs:
        combo = parse_spec(spec)
        if combo.model_type not in MODEL_TYPES:
            raise UsageError(f"run-mode spec {spec!r}: model type must be one of {', '.join(MODEL_TYPES)}")
        combos.append(combo)
    return list(dict.fromkeys(combos))


def plan(params: BenchmarkParams, combos: Sequence[Combination], cuda: bool, gpu_count: int = 0) -> list[PlannedRun]:
    """Decide every combination: train.py flags and process count, or a skip with its reason."""
    runs = []
    for combo in combos:
        flags = [f"--batch-size={combo.batch_size}", f"--epochs={params.epochs}", f"--max-steps={params.max_steps}",
                 "--print-freq=1", "--eval-during-train=False", "--bn-recalibration-batches=0",
                 *PRECISION_FLAGS[combo.fp_item]]
        if params.num_workers is not None:
            flags.append(f"--workers={params.num_workers}")
        if params.data_path:
            flags.append(f"--data-path={params.data_path}")
        if combo.model_type == "dynamicTostatic":
            flags.append("--to_static=True")
        reason = ""
        if combo.nodes > 1:
            reason = f"{combo.device_num} needs {combo.nodes} hosts; benchmark_train runs on this host only"
        elif combo.fp_item != "fp32" and not cuda:
            reason = (f"{combo.fp_item} training needs CUDA (on CPU train.py --amp would train in float32); "
                      "this machine has no GPU")
        elif cuda and combo.cards > gpu_count:
            reason = f"{combo.device_num} needs {combo.cards} GPUs, this machine has {gpu_count}"
        runs.append(PlannedRun(combo, tuple(flags), nproc=combo.cards, skip_reason=reason))
    return runs


def launcher(run: PlannedRun, cuda: bool, log_dir: str) -> list[str]:
    """The ``-m paddle.distributed.launch ...`` words for a multi-process run (empty for one process)."""
    if run.nproc <= 1:
        return []
    words = ["-m", "paddle.distributed.launch", "--log_dir", log_dir]
    if cuda:
        return [*words, "--gpus", ",".join(str(i) for i in range(run.nproc))]
    return [*words, "--nproc_per_node", str(run.nproc)]


def profiling_flags(params: BenchmarkParams) -> list[str]:
    """train.py flags of the profiling run (empty when the section has no --profiler_options)."""
    return [f"--profiler_options={params.profiler_options}"] if params.profiler_options else []


def make_benchmark_data(source: str | os.PathLike[str], target: str | os.PathLike[str],
                        repeat: int = DEFAULT_REPEAT) -> int:
    """``target``: ``source``'s train/ images each ``repeat`` times (hard links where possible), val/ as is.

    lite_data has 16 training images, fewer than one batch of two processes at batch 16; the
    benchmark needs every combination's batches full. Returns the number of training images.
    """
    from pathlib import Path

    src, dst = Path(source), Path(target)
    train = src / "train"
    if not train.is_dir():
        raise UsageError(f"{train}: not found (run prepare.sh ... lite_train_lite_infer first, or pass --from)")
    if repeat < 1:
        raise UsageError(f"--repeat must be at least 1, got {repeat}")
    marker = dst / MARKER
    if dst.exists() and not marker.is_file():  # never delete a data set this function did not build
        raise UsageError(f"{dst} exists and was not built by benchmark_train (no {MARKER}); "
                         "remove it or point data_path elsewhere")
    shutil.rmtree(dst, ignore_errors=True)
    count = 0
    for image in sorted(p for p in train.rglob("*") if p.is_file()):
        folder = dst / "train" / image.parent.relative_to(train)
        folder.mkdir(parents=True, exist_ok=True)
        for copy in range(repeat):
            out = folder / f"{image.stem}_r{copy}{image.suffix}"
            try:
                os.link(image, out)
            except OSError:
                shutil.copy2(image, out)
            count += 1
    for name in ("val", "labels.txt"):
        if (src / name).is_dir():
            shutil.copytree(src / name, dst / name)
        elif (src / name).is_file():
            shutil.copy2(src / name, dst / name)
    marker.write_text(f"{count} training images: {repeat} x {src}/train\n", encoding="utf-8")
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="build the benchmark_train data set from lite_data")
    add_flag(parser, "from", dest="source", default="./lite_data", help="source data set (default: ./lite_data)")
    add_flag(parser, "to", dest="target", default="./benchmark_data", help="output (default: ./benchmark_data)")
    add_flag(parser, "repeat", type=int, default=DEFAULT_REPEAT, help=f"copies per image (default: {DEFAULT_REPEAT})")
    args = parser.parse_args(argv)
    count = make_benchmark_data(args.source, args.target, args.repeat)
    print(f"{args.target}: {count} training images ({args.repeat} x {args.source}/train)")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(run_main(main))
