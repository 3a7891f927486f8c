"""The training benchmark chain (PaddleClas's ``benchmark_train.sh``, same command line).

    bash test_tipc/benchmark_train.sh CONFIG benchmark_train [dynamic_bs8_fp32_DP_N1C1 ...]

Planned in full first (every config error before anything runs). Then, per combination of
``train_benchmark_params`` (or per run-mode spec given on the command line): one training run of
``max_steps`` steps with the norm trainer and the ``train_params`` flags at their
``lite_train_lite_infer`` values (data path, seed, ...), the benchmark's batch size, precision,
device layout and model type on top; its speed log; one profiling run (the first runnable
combination, ``--profiler_options``) whose trace must exist; then the summary table and plot.
Results: ``test_tipc/output/<model_name>/benchmark_train/results_benchmark_train.log``, speed logs
in ``.../index/``.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

from mobilenetv3_tipc import cli
from mobilenetv3_tipc.tipc import benchmark_train as bt
from mobilenetv3_tipc.tipc import speed_log
from mobilenetv3_tipc.tipc.chain import (
    Context,
    UsageError,
    cuda_available,
    defining_check,
    execute,
    make_context,
    resolve_args,
)
from mobilenetv3_tipc.tipc.config import Config, ConfigError, norm_key
from mobilenetv3_tipc.tipc.runner import Run, quote_command
from mobilenetv3_tipc.tipc.train_chain import basic_train_command
from mobilenetv3_tipc.training.profiler import parse_profiler_options

MODES = ("benchmark_train",)
RESULTS_NAME = "results_benchmark_train.log"
DATA_MODE = "lite_train_lite_infer"  # whose per-mode train_params values a benchmark run uses
GROUP = "benchmark"


def read_params(cfg: Config) -> bt.BenchmarkParams:
    """The ``train_benchmark_params`` section; every unknown key or bad value is a FILE:LINE error."""
    cfg.require_section(bt.SECTION, "its batch sizes, precisions and device layouts are the benchmark")
    entries = cfg.in_section(bt.SECTION)
    lines = {e.key: e.line for e in entries}
    header = cfg.sections[bt.SECTION]
    try:
        return bt.parse_params({e.key: e.value for e in entries},
                               where=lambda key: f"{cfg.path}:{lines.get(key, header)}")
    except bt.BenchmarkConfigError as exc:
        raise ConfigError(str(exc)) from None


def run(argv: list[str]) -> int:
    """``benchmark_train.sh CONFIG benchmark_train [RUN_MODE_SPEC ...]``: the chain's exit code."""
    config, mode, specs, how = resolve_args("benchmark_train", argv, MODES)
    mode = mode or "benchmark_train"  # a lone CONFIG
    if mode != "benchmark_train":
        raise UsageError("usage: bash test_tipc/benchmark_train.sh CONFIG benchmark_train [RUN_MODE_SPEC ...]"
                         + (f" (got MODE '{mode}')" if mode else ""))
    ctx = make_context("train", config, mode, RESULTS_NAME)
    try:
        chain = BenchmarkChain(ctx, specs)
    except cli.UsageError as exc:  # a bad run-mode spec or --profiler_options value
        raise UsageError(str(exc)) from None
    banner = f"TIPC benchmark_train chain: config {ctx.cfg.path}, results {ctx.out_dir / RESULTS_NAME}"
    return execute(ctx, chain, banner + (f" ({how})" if how else ""))


def gpu_count(python: list[str], cuda: bool) -> int:
    if not cuda:
        return 0
    import subprocess

    probe = "import paddle; print(paddle.device.cuda.device_count())"
    out = subprocess.run([*python, "-c", probe], capture_output=True, text=True, timeout=300, check=False)
    return int(out.stdout.strip() or 0) if out.returncode == 0 else 0


class BenchmarkChain:
    def __init__(self, ctx: Context, specs: list[str]) -> None:
        self.ctx = ctx
        cfg = ctx.cfg
        self.params = read_params(cfg)
        self.combos = bt.select(self.params, specs)
        # the train command of the basic chain, at the lite mode's values (data path, seed, ...)
        self.train_ctx = dataclasses.replace(ctx, mode=DATA_MODE)
        if basic_train_command(self.train_ctx, ctx.out_dir, "cpu") is None:
            raise cfg.error(cfg.entry("norm_train", "train_params"),
                            "norm_train is null: the benchmark trains with the norm trainer")
        python = ctx.python
        self.cuda = cuda_available(python)
        self.runs = bt.plan(self.params, self.combos, self.cuda, gpu_count(python, self.cuda))
        self.index_dir = ctx.out_dir / "index"
        self.env = dict(os.environ, **self.params.flags)

    def argv(self, planned: bt.PlannedRun, run_dir: Path, extra: list[str] = ()) -> list[str]:
        launcher = bt.launcher(planned, self.cuda, str(run_dir / "launch_log"))
        words = basic_train_command(self.train_ctx, run_dir, "gpu" if self.cuda else "cpu", launcher)
        assert words is not None  # checked in __init__
        ours = [*planned.train_flags, *extra]
        # the benchmark's own values replace the lite chain's, so each flag appears once
        replaced = {norm_key(w.partition("=")[0]) for w in ours if w.startswith("--") and "=" in w}
        kept = [w for w in words if not (w.startswith("--") and "=" in w and norm_key(w.partition("=")[0]) in replaced)]
        return [*kept, *ours]

    def __call__(self, ctx: Context, run: Run) -> None:
        model = ctx.model
        shutil.rmtree(self.index_dir, ignore_errors=True)  # the summary covers this run's combinations only
        for planned in self.runs:
            combo = planned.combo
            log = ctx.log(f"{model}_{combo.spec}")
            run_dir = ctx.out_dir / combo.spec
            argv = self.argv(planned, run_dir)
            if not planned.runnable:
                run.skip(quote_command(argv), planned.skip_reason, group=GROUP, hardware=planned.hardware)
                speed_log.skipped(model, combo, planned.skip_reason).write(self.index_dir)
                continue
            step = run.step(argv, log, group=GROUP, env=self.env)
            if step.status == "passed":
                try:
                    text = log.read_text(encoding="utf-8", errors="replace")
                    speed_log.speed_from_log(text, model, combo, self.params.skip_steps, str(log)).write(self.index_dir)
                except speed_log.SpeedLogError as exc:
                    run.fail(f"speed log of {combo.spec}", str(exc), group=GROUP)
                    speed_log.failed(model, combo, str(exc), str(log)).write(self.index_dir)
            elif step.status == "skipped":
                speed_log.skipped(model, combo, step.reason, str(log)).write(self.index_dir)
            else:
                speed_log.failed(model, combo, step.reason, str(log)).write(self.index_dir)
        self.profile(ctx, run)
        defining_check(run, GROUP, "benchmark_train")
        try:
            table, _, png = speed_log.write_summary(self.index_dir)
            print(f"speed summary: {table}, plot: {png}", flush=True)
        except speed_log.SpeedLogError as exc:
            run.fail("speed summary", str(exc), group="verdict")

    def profile(self, ctx: Context, run: Run) -> None:
        if not self.params.profiler_options:
            return
        planned = next((p for p in self.runs if p.runnable), None)
        if planned is None:
            run.skip("profiling run", "no combination can run on this machine", group="profiling", hardware=True)
            return
        options = parse_profiler_options(self.params.profiler_options)
        run_dir = ctx.out_dir / f"{planned.combo.spec}_profiling"
        steps = max(self.params.max_steps, options.batch_range[1])
        flags = [f for f in planned.train_flags if not f.startswith("--max-steps=")]
        planned = dataclasses.replace(planned, train_flags=(*flags, f"--max-steps={steps}"))
        argv = self.argv(planned, run_dir, bt.profiling_flags(self.params))
        step = run.step(argv, ctx.log(f"{ctx.model}_{planned.combo.spec}_profiling"), group="profiling", env=self.env)
        trace = options.trace_path(run_dir)
        if step.status == "passed" and not (options.timer_only or trace.is_file()):
            run.fail(f"profiler trace of {planned.combo.spec}", f"{trace} was not written", group="profiling")
