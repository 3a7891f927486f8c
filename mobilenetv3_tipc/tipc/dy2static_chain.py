"""The dynamic-to-static training chain (PaddleClas's ``test_train_dy2static_python.sh``).

    bash test_tipc/test_train_dy2static_python.sh test_tipc/configs/<model>/train_dy2static_python.txt [MODE]

Steps: the ``norm_train`` run (dygraph), the same run plus ``to_static_train``'s flags
(``--to_static``), both with the config's ``--seed`` and ``--print-freq=1``; then the per-step loss
comparison (:mod:`mobilenetv3_tipc.tipc.dy2static`) within ``loss_tolerance``, which also records
both speeds. A ``to_static`` run that Paddle cannot trace fails with Paddle's error (the defining
comparison is then failed, never skipped). Results:
``test_tipc/output/<model_name>/<MODE>/results_dy2static.log``.
"""

from __future__ import annotations

import shutil

from mobilenetv3_tipc.tipc.chain import (
    TRAIN_MODES,
    Context,
    UsageError,
    cuda_available,
    execute,
    make_context,
    render_flag,
    resolve_args,
)
from mobilenetv3_tipc.tipc.config import alternatives, is_null, mode_value
from mobilenetv3_tipc.tipc.dy2static import DEFAULT_TOLERANCE, RESULT_NAME
from mobilenetv3_tipc.tipc.runner import Run, quote_command
from mobilenetv3_tipc.tipc.train_chain import basic_train_command, parse_device

MODES = TRAIN_MODES
RESULTS_NAME = "results_dy2static.log"
SECTION = "dy2static_params"
KEYS = ("loss_tolerance", "skip_steps")
RUNS = ("norm_train", "to_static_train")
TRAIN_KEYS = frozenset({"model_name", "python", "gpu_list", "trainer", *RUNS, "train_model_name", "null"})


def last_error(text: str) -> str:
    """The last ``...Error: message`` line of a log (Paddle's reason), else its last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if "Error" in line.split(":", 1)[0]]
    return (errors or lines or ["(empty log)"])[-1][:300]


def run(argv: list[str]) -> int:
    """``test_train_dy2static_python.sh CONFIG [MODE]``: the chain's exit code."""
    config, mode, rest, how = resolve_args("dy2static", argv, MODES)
    if rest:
        raise UsageError("usage: bash test_tipc/test_train_dy2static_python.sh CONFIG [MODE]")
    ctx = make_context("dy2static", config, mode, RESULTS_NAME, modes=MODES)
    chain = Dy2StaticChain(ctx)
    banner = f"TIPC dy2static chain: config {ctx.cfg.path}, mode {ctx.mode}, results {ctx.out_dir / RESULTS_NAME}"
    return execute(ctx, chain, banner + (f" ({how})" if how else ""))


class Dy2StaticChain:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        cfg = ctx.cfg
        for name in cfg.sections:
            if name not in ("train_params", SECTION):
                raise cfg.error(None, f"line {cfg.sections[name]}: section {name} is not read by this chain "
                                      f"(sections: train_params, {SECTION})")
        for e in cfg.in_section("train_params"):
            if not e.is_flag and e.key not in TRAIN_KEYS:
                raise cfg.unsupported(e, "a dy2static config's train_params holds only "
                                       f"{', '.join(sorted(TRAIN_KEYS))} and --flags")
        for e in cfg.in_section(SECTION):
            if e.key not in KEYS:
                raise cfg.unsupported(e, f"{SECTION} holds only {', '.join(KEYS)}")
        tolerance = cfg.get("loss_tolerance", str(DEFAULT_TOLERANCE), SECTION)
        skip = cfg.get("skip_steps", "1", SECTION)
        try:
            self.tolerance, self.skip_steps = float(tolerance), int(skip)
        except ValueError:
            raise cfg.error(cfg.entry("loss_tolerance", SECTION), f"loss_tolerance {tolerance!r} / skip_steps "
                                                                  f"{skip!r}: expected a number") from None
        if cfg.find("seed", "train_params", flag=True) is None:
            raise cfg.error(None, "train_params needs --seed: both runs must draw the same random numbers")
        trainer = cfg.require("trainer", "norm_train|to_static_train", "train_params")
        names = alternatives(trainer.value)
        if names != ["norm_train", "to_static_train"]:
            raise cfg.error(trainer, "trainer must be norm_train|to_static_train (dygraph, then to_static)")
        self.static_extra = cfg.require("to_static_train", "the flags of the to_static run", "train_params")
        if is_null(self.static_extra.value):
            raise cfg.error(self.static_extra, "to_static_train is null: nothing to compare against")
        gpu = cfg.require("gpu_list", "the device of both runs", "train_params")
        devices = alternatives(gpu.value)
        if len(devices) != 1:
            raise cfg.error(gpu, "gpu_list must name one device entry (both runs use it)")
        self.device = parse_device(ctx, gpu, devices[0])
        if basic_train_command(ctx, ctx.out_dir, self.device.kind) is None:
            raise cfg.error(cfg.entry("norm_train", "train_params") or trainer, "norm_train is null")

    def argv(self, name: str) -> list[str]:
        words = basic_train_command(self.ctx, self.ctx.out_dir / name, self.device.kind)
        assert words is not None  # checked in __init__
        return [*words, "--print-freq=1", *(self.static_extra.value.split() if name == "to_static_train" else [])]

    def __call__(self, ctx: Context, run: Run) -> None:
        logs, problems = {}, []
        for name in RUNS:
            argv = self.argv(name)
            if self.device.kind == "gpu" and not cuda_available(ctx.python):
                run.skip(quote_command(argv), f"gpu_list {self.device.entry} needs CUDA", group="train",
                         hardware=True)
                continue
            shutil.rmtree(ctx.out_dir / name, ignore_errors=True)
            log = ctx.log(f"{name}_train")
            step = run.step(argv, log, group="train")
            text = log.read_text(encoding="utf-8", errors="replace") if log.is_file() else ""
            if step.status == "passed":
                logs[name] = log
            elif step.status == "failed":
                problems.append(f"{name} failed: {last_error(text)}")
            else:  # exit 77 on a machine that has the device: to_static is not a hardware question
                problems.append(f"{name} was skipped ({step.reason}); a conversion problem is a failure here")
        if len(logs) < len(RUNS):
            if not problems:  # both skipped for the missing GPU: the hardware skips say so
                return
            run.fail("dygraph / to_static loss comparison", "; ".join(problems), group="compare")
            return
        compare = [*ctx.python, "-m", "mobilenetv3_tipc.tipc.dy2static",
                   f"--dygraph-log={logs['norm_train']}", f"--static-log={logs['to_static_train']}",
                   f"--tolerance={self.tolerance}", f"--skip-steps={self.skip_steps}", f"--model={ctx.model}",
                   f"--out={ctx.out_dir / RESULT_NAME}"]
        batch = ctx.cfg.find("batch_size", "train_params", flag=True)
        if batch is not None:
            compare += render_flag("--batch-size", mode_value(batch.value, ctx.mode))
        run.step(compare, ctx.log("loss_compare"), group="compare")
