"""Check a converted ONNX model before trusting it: ONNX checker, dynamic batch, a batch-N run.

    python deploy/onnx_python/check_model.py --onnx-file=./inference/mobilenet_v3_small_onnx/model.onnx

1. ``onnx.checker.check_model(full_check=True)`` (structure and shape inference),
   and, with ``--expect-opset``, the opset that was asked for;
2. one image input of rank 4 whose batch dimension is symbolic (paddle2onnx
   keeps the ``-1`` of the exported ``InputSpec`` as ``DynamicDimension.0``),
   and an output whose batch dimension is symbolic too;
3. ONNX Runtime on a batch of each ``--batch-sizes`` value: output shape
   ``(N, classes)``, finite values, rows summing to 1 (the exported program ends
   in a softmax), and each row equal to the same image run alone.

Exit codes: 0 ok, 1 a check failed, 2 bad arguments or missing file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from mobilenetv3_tipc.cli import EXIT_OK, UsageError, add_flag, run_main

# Rows of a batch must match the same image run alone to this absolute difference.
BATCH_CONSISTENCY_ATOL = 1e-5
SOFTMAX_SUM_ATOL = 1e-3


class OnnxCheckError(RuntimeError):
    """The model fails a check; the message says which."""


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flag(parser, "onnx-file", required=True, help="the .onnx model to check")
    add_flag(parser, "batch-sizes", default="1,2", help="comma-separated batch sizes to run (default: %(default)s)")
    add_flag(parser, "expect-opset", type=int, default=None,
             help="fail unless the default-domain opset is this one (the --opset_version asked for)")
    add_flag(parser, "threads", type=int, default=0, help="onnxruntime threads (default: 0 = every core)")
    return parser


def _dims(value_info: object) -> list[int | str]:
    shape = value_info.type.tensor_type.shape  # type: ignore[attr-defined]
    return [d.dim_param if d.dim_param else (d.dim_value if d.HasField("dim_value") else "?") for d in shape.dim]


def _is_dynamic(dim: int | str) -> bool:
    return isinstance(dim, str) or dim <= 0


def check_structure(path: Path) -> dict[str, object]:
    """ONNX checker + dynamic batch on input and output. Returns a description."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise OnnxCheckError(f"{path}: ONNX checker failed: {exc}") from exc
    model = onnx.load(str(path))
    initializers = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1 or len(model.graph.output) != 1:
        raise OnnxCheckError(f"{path}: expected one input and one output, got {len(inputs)} and "
                             f"{len(model.graph.output)}")
    in_dims, out_dims = _dims(inputs[0]), _dims(model.graph.output[0])
    if len(in_dims) != 4:
        raise OnnxCheckError(f"{path}: input {inputs[0].name} has shape {in_dims}, expected [batch, 3, H, W]")
    if not _is_dynamic(in_dims[0]):
        raise OnnxCheckError(f"{path}: the batch dimension of input {inputs[0].name} is fixed to {in_dims[0]}; "
                             "export with InputSpec([None, 3, H, W]) so paddle2onnx keeps it dynamic")
    if len(out_dims) != 2 or not _is_dynamic(out_dims[0]):
        raise OnnxCheckError(f"{path}: output {model.graph.output[0].name} has shape {out_dims}, "
                             "expected [batch, classes] with a dynamic batch")
    opsets = {op.domain or "ai.onnx": op.version for op in model.opset_import}
    return {"input": (inputs[0].name, in_dims), "output": (model.graph.output[0].name, out_dims),
            "opset": opsets.get("ai.onnx"), "nodes": len(model.graph.node), "ir_version": model.ir_version}


def check_runs(path: Path, in_dims: list[int | str], batch_sizes: list[int], threads: int = 0) -> int:
    """Run each batch size; returns the number of classes."""
    from mobilenetv3_tipc.inference.onnx_predictor import OnnxPredictor

    predictor = OnnxPredictor(path, threads=threads)
    defaults = (3, 224, 224)  # for a symbolic channel/height/width
    channels, height, width = (
        dim if isinstance(dim, int) and dim > 0 else default
        for dim, default in zip(in_dims[1:], defaults, strict=True)
    )
    rng = np.random.default_rng(0)
    images = rng.standard_normal((max(batch_sizes), channels, height, width)).astype(np.float32)
    singles = np.concatenate([predictor.run(images[i:i + 1]) for i in range(len(images))])
    if singles.ndim != 2 or not np.all(np.isfinite(singles)):
        raise OnnxCheckError(f"{path}: batch-1 output has shape {list(singles.shape)} or non-finite values")
    sums = singles.sum(axis=1)
    if not np.allclose(sums, 1.0, atol=SOFTMAX_SUM_ATOL):
        raise OnnxCheckError(f"{path}: output rows sum to {sums.min():.4f}..{sums.max():.4f}, not 1: "
                             "is the softmax of the exported program missing?")
    for n in batch_sizes:
        out = predictor.run(images[:n])
        if out.shape != (n, singles.shape[1]):
            raise OnnxCheckError(f"{path}: batch {n} gave output shape {list(out.shape)}, "
                                 f"expected {[n, singles.shape[1]]}")
        diff = float(np.abs(out - singles[:n]).max())
        if diff > BATCH_CONSISTENCY_ATOL:
            raise OnnxCheckError(f"{path}: batch {n} rows differ from single-image runs by {diff:.2e} "
                                 f"(> {BATCH_CONSISTENCY_ATOL:.0e})")
        print(f"batch {n}: output {list(out.shape)}, rows equal single-image runs (max |d| {diff:.1e})")
    return int(singles.shape[1])


def run(argv: list[str] | None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        batch_sizes = sorted({int(b) for b in args.batch_sizes.split(",") if b.strip()})
    except ValueError:
        batch_sizes = []
    if not batch_sizes or batch_sizes[0] < 1:
        raise UsageError(f"--batch-sizes must be positive integers separated by commas, got {args.batch_sizes!r}")
    path = Path(args.onnx_file)
    if not path.is_file():
        raise UsageError(f"{path}: ONNX file not found (did the paddle2onnx step run?)")
    info = check_structure(path)
    print(f"onnx checker: ok (opset {info['opset']}, IR version {info['ir_version']}, {info['nodes']} nodes)")
    if args.expect_opset is not None and info["opset"] != args.expect_opset:
        raise OnnxCheckError(f"{path}: opset {info['opset']}, expected {args.expect_opset} "
                             "(was the opset auto-upgraded?)")
    print(f"input {info['input'][0]} {info['input'][1]}, output {info['output'][0]} {info['output'][1]}: "
          "dynamic batch")
    classes = check_runs(path, info["input"][1], batch_sizes, threads=args.threads)
    print(f"OK: {path} is a valid ONNX model with a dynamic batch and {classes} classes")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    return run_main(run, argv)


if __name__ == "__main__":
    sys.exit(main())
