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

from mobilenetv3_tipc.tipc.chain import TRAIN_MODES, Context, cuda_available, render_flag
from mobilenetv3_tipc.tipc.config import ConfigError, alternatives, is_null
from mobilenetv3_tipc.tipc.dy2static import DEFAULT_TOLERANCE, RESULT_NAME
from mobilenetv3_tipc.tipc.runner import Run, quote_command
from mobilenetv3_tipc.tipc.train_chain import TrainChain, parse_device

MODES = TRAIN_MODES
RESULTS_NAME = "results_dy2static.log"
SECTION = "dy2static_params"
KEYS = ("loss_tolerance", "skip_steps")


def last_error(text: str) -> str:
    """The last ``...Error: message`` line of a log (Paddle's reason), else its last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if "Error" in line.split(":", 1)[0]]
    return (errors or lines or ["(empty log)"])[-1][:300]


def train_commands(ctx: Context) -> TrainChain:
    """TrainChain's trainer_command/train_flags without its train_infer_python.txt checks.

    (Draft: to be replaced by the engine's own train-command helper, requested from the tipc
    helper; those two methods read only ``ctx`` and ``cfg``.)
    """
    chain = TrainChain.__new__(TrainChain)
    chain.ctx, chain.cfg = ctx, ctx.cfg
    return chain


class Dy2StaticChain:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        cfg = ctx.cfg
        self.train_chain = train_commands(ctx)
        for e in cfg.in_section(SECTION):
            if e.key not in KEYS:
                raise cfg.error(e, f"{e.key} is not supported in {SECTION} (keys: {', '.join(KEYS)})")
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
        words, _, _ = self.train_chain.trainer_command("norm_train", trainer)
        if words is None:
            raise ConfigError(f"{cfg.path}: norm_train is null")
        self.norm = words

    def argv(self, name: str) -> list[str]:
        run_dir = self.ctx.out_dir / name
        argv = [*self.norm, *self.train_chain.train_flags(run_dir, self.device.kind), "--print-freq=1"]
        return argv + (self.static_extra.value.split() if name == "to_static_train" else [])

    def __call__(self, ctx: Context, run: Run) -> None:
        logs = {}
        for name in ("norm_train", "to_static_train"):
            argv = self.argv(name)
            if self.device.kind == "gpu" and not cuda_available(ctx.python):
                run.skip(quote_command(argv), f"gpu_list {self.device.entry} needs CUDA", group="train",
                         hardware=True)
                continue
            shutil.rmtree(ctx.out_dir / name, ignore_errors=True)
            log = ctx.log(f"{name}_train")
            step = run.step(argv, log, group="train")
            if step.status == "passed":
                logs[name] = log
            elif step.status == "failed" and log.is_file():
                print(f"{name}: {last_error(log.read_text(encoding='utf-8', errors='replace'))}", flush=True)
        if len(logs) < 2:
            missing = [n for n in ("norm_train", "to_static_train") if n not in logs]
            run.fail("dygraph / to_static loss comparison", f"{', '.join(missing)} did not finish; see its log",
                     group="compare")
            return
        batch = self.train_chain.cfg.find("batch_size", "train_params", flag=True)
        compare = [*ctx.python, "-m", "mobilenetv3_tipc.tipc.dy2static",
                   f"--dygraph-log={logs['norm_train']}", f"--static-log={logs['to_static_train']}",
                   f"--tolerance={self.tolerance}", f"--skip-steps={self.skip_steps}", f"--model={ctx.model}",
                   f"--out={ctx.out_dir / RESULT_NAME}"]
        if batch is not None:
            from mobilenetv3_tipc.tipc.config import mode_value

            compare += render_flag("--batch-size", mode_value(batch.value, ctx.mode))
        run.step(compare, ctx.log("loss_compare"), group="compare")
