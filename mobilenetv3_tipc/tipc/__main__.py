"""``python -m mobilenetv3_tipc.tipc CHAIN [CONFIG] [MODE] [extra]`` -- what test_tipc/*.sh run.

CHAIN: ``train`` (test_train_inference_python.sh), ``ptq`` (test_ptq_inference_python.sh),
``paddle2onnx`` (test_paddle2onnx.sh), ``serving`` (test_serving.sh,
test_serving_infer_python.sh), ``benchmark_train`` (benchmark_train.sh), ``dy2static``
(test_train_dy2static_python.sh), ``prepare`` (prepare.sh), ``report`` (tipc_report.py).
Exit codes: 0 green, 1 a step failed or none ran, 2 usage or config error (nothing was
run or written), 75 the output folder is in use by another run, 130/143 interrupted.
"""

from __future__ import annotations

import importlib
import os
import sys

from mobilenetv3_tipc.tipc.chain import EXIT_USAGE, MODE_KIND, UsageError, execute, make_context, resolve_args
from mobilenetv3_tipc.tipc.config import Config, ConfigError, is_null

RESULTS = {"train": "results_python.log", "ptq": "results_ptq.log", "paddle2onnx": "results_paddle2onnx.log",
           "serving": "results_serving.log"}
USAGE = {
    "train": "bash test_tipc/test_train_inference_python.sh [CONFIG] [MODE] [GPU_ID]",
    "ptq": "bash test_tipc/test_ptq_inference_python.sh [CONFIG] [MODE]",
    "paddle2onnx": "bash test_tipc/test_paddle2onnx.sh [CONFIG] [MODE]",
    "serving": "bash test_tipc/test_serving.sh [CONFIG] [MODE]",
    "benchmark_train": "bash test_tipc/benchmark_train.sh CONFIG benchmark_train [RUN_MODE_SPEC ...]",
    "dy2static": "bash test_tipc/test_train_dy2static_python.sh CONFIG [MODE]",
}
# chains whose module has run(argv) -> exit code (planned and executed by that module)
OWN_MAIN = {"benchmark_train": "mobilenetv3_tipc.tipc.benchmark_chain",
            "dy2static": "mobilenetv3_tipc.tipc.dy2static_chain"}


def chain_class(kind: str):  # noqa: ANN201 - the chain's class
    if kind == "train":
        from mobilenetv3_tipc.tipc.train_chain import MODES, TrainChain

        return TrainChain, MODES
    if kind == "ptq":
        from mobilenetv3_tipc.tipc.ptq_chain import MODES, PtqChain

        return PtqChain, MODES
    if kind == "paddle2onnx":
        from mobilenetv3_tipc.tipc.onnx_chain import MODES, OnnxChain

        return OnnxChain, MODES
    from mobilenetv3_tipc.tipc.serving_chain import MODES, ServingChain

    return ServingChain, MODES


def has_kl_quant(config: str) -> bool:
    cfg = Config.load(config)
    entry = cfg.entry("kl_quant")
    return "ptq_params" not in cfg.sections and entry is not None and not is_null(entry.value)


def run_chain(kind: str, argv: list[str]) -> int:
    cls, modes = chain_class(kind)
    config, mode, rest, how = resolve_args(kind, argv, modes)
    if kind == "train" and (mode == "klquant_whole_infer" or (mode == "whole_infer" and has_kl_quant(config))):
        kind = "ptq"  # a train-layout config's kl_quant (PaddleClas whole_infer): the PTQ chain with KL
        cls, modes = chain_class(kind)
    elif MODE_KIND.get(mode, kind) != kind and mode:
        raise UsageError(f"MODE {mode} belongs to test_tipc/{USAGE[MODE_KIND[mode]].split()[1].split('/')[-1]}")
    gpu_id = ""
    if kind == "train" and rest:
        gpu_id, rest = rest[0], rest[1:]
    if rest:
        raise UsageError(f"usage: {USAGE[kind]}")
    ctx = make_context(kind, config, mode, RESULTS[kind], modes=modes if kind == "train" else None)
    if gpu_id:
        if ctx.mode != "whole_infer" or not gpu_id.replace(",", "").isdigit():
            raise UsageError("GPU_ID (card ids like 0 or 0,1) is read in whole_infer only, as upstream")
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu_id
    chain = cls(ctx)  # plans everything: config errors surface here, before anything is written
    banner = f"TIPC {kind} chain: config {ctx.cfg.path}, mode {ctx.mode}, results {ctx.out_dir / ctx.results_name}"
    if how:
        banner += f" ({how})"
    return execute(ctx, chain, banner)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] in (["catalog"], ["verdict"], ["summary"]):  # the run-all's (test_all.sh) commands
        return importlib.import_module("mobilenetv3_tipc.tipc.runall").main(args)
    if not args or args[0] not in (*RESULTS, *OWN_MAIN, "prepare", "report"):
        print(__doc__, file=sys.stderr)
        return EXIT_USAGE
    chain, rest = args[0], args[1:]
    try:
        if chain == "report":
            from mobilenetv3_tipc.tipc.results import report_main

            return report_main(rest)
        if chain == "prepare":
            from mobilenetv3_tipc.tipc.prepare import main as prepare_main

            return prepare_main(rest)
        if chain in OWN_MAIN:
            return importlib.import_module(OWN_MAIN[chain]).run(rest)
        return run_chain(chain, rest)
    except (ConfigError, UsageError) as exc:
        print(f"ERROR: {exc}", file=sys.stderr, flush=True)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
