"""Agreement gate: the dygraph model, Paddle Inference and ONNX Runtime must give the same answers.

    python tools/check_agreement.py --model=mobilenet_v3_small \
        --pretrained=./pretrain_models/mobilenet_v3_small_pretrained.pdparams \
        --model-dir=./inference/mobilenet_v3_small_infer \
        --onnx-file=./inference/mobilenet_v3_small_onnx/model.onnx --img-path=./lite_data/val

The reference is the dygraph model built from ``--pretrained`` (your own trained
weights work). ``--model-dir`` (exported Paddle model) and ``--onnx-file`` are
each optional, but at least one is needed. On every image each backend must
give the reference's top-1 class, and its probabilities must be within
``--tolerance`` (max absolute difference; fp32 default 1e-4). Prints a table
(backend, top-1 agreement, max |Δp|) and a verdict line.

Exit codes: 0 every backend agrees, 1 a backend disagrees or cannot run,
2 bad arguments or missing files.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path

import numpy as np

from mobilenetv3_tipc.cli import EXIT_FAILED, EXIT_OK, UsageError, add_flag, auto_or_bool, run_main
from mobilenetv3_tipc.data.preprocess import CROP_SIZE, RESIZE_SIZE, list_images, preprocess
from mobilenetv3_tipc.export import layout
from mobilenetv3_tipc.inference.agreement import (
    BACKEND_ERRORS,
    DEFAULT_TOLERANCE,
    Backend,
    BackendResult,
    all_agree,
    compare_backends,
    format_table,
    reference_strength,
    verdict,
)

logger = logging.getLogger("check_agreement")

DEFAULT_MODEL = "mobilenet_v3_small"


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None,
                        help=f"model name (default: model_info.json of --model-dir, else {DEFAULT_MODEL})")
    parser.add_argument("--pretrained", required=True, help="weights (.pdparams) of the reference dygraph model")
    add_flag(parser, "num-classes", type=int, default=None,
             help="classes (default: read from the weights)")
    parser.add_argument("--scale", type=float, default=None,
                        help="width multiplier (default: model_info.json of --model-dir, else 1.0)")
    add_flag(parser, "model-dir", default=None,
             help="exported Paddle model (inference.json + .pdiparams) to run with Paddle Inference")
    add_flag(parser, "onnx-file", default=None, help="ONNX model to run with ONNX Runtime")
    add_flag(parser, "img-path", default="./images/demo.jpg",
             help="an image, a folder, or a folder of class folders (default: %(default)s)")
    add_flag(parser, "max-images", type=int, default=0,
             help="use at most this many images (default: 0 = all)")
    add_flag(parser, "batch-size", type=int, default=8, help="images per run (default: 8)")
    add_flag(parser, "tolerance", type=float, default=DEFAULT_TOLERANCE,
             help="largest allowed |p_backend - p_reference| (default: %(default)g, for fp32)")
    add_flag(parser, "cpu-threads", type=int, default=0,
             help="CPU threads of Paddle Inference and ONNX Runtime (default: 0 = every core)")
    add_flag(parser, "enable-mkldnn", type=auto_or_bool, nargs="?", const=True, default=None, metavar="BOOL",
             help="Paddle Inference: oneDNN on (True) or off (False) (default: the engine infer.py picks)")
    add_flag(parser, "use-openvino", type=auto_or_bool, nargs="?", const=True, default=None, metavar="auto|BOOL",
             help="Paddle Inference on the OpenVINO engine (default: auto)")
    add_flag(parser, "resize-size", type=int, default=RESIZE_SIZE, help="default: 256")
    add_flag(parser, "crop-size", type=int, default=CROP_SIZE, help="default: 224")
    add_flag(parser, "save-json", default=None, help="also write the results to this JSON file")
    return parser


def _model_info(model_dir: str | None) -> dict[str, object]:
    if not model_dir:
        return {}
    path = Path(model_dir) / layout.MODEL_INFO
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        logger.warning("ignoring %s: %s", path, exc)
        return {}


def _check_inputs(args: argparse.Namespace) -> str | None:
    """A usage problem (message), or None."""
    if not args.model_dir and not args.onnx_file:
        return "nothing to compare: give --model-dir and/or --onnx-file"
    if args.batch_size < 1 or args.max_images < 0 or args.cpu_threads < 0:
        return "--batch-size must be >= 1, --max-images and --cpu-threads >= 0"
    if not args.tolerance >= 0:
        return f"--tolerance must be >= 0, got {args.tolerance}"
    if not Path(args.pretrained).is_file():
        return f"{args.pretrained}: weights file not found (--pretrained)"
    if args.model_dir and not Path(args.model_dir).is_dir():
        return f"{args.model_dir}: exported model directory not found (--model-dir)"
    if args.onnx_file and not Path(args.onnx_file).is_file():
        return f"{args.onnx_file}: ONNX file not found (--onnx-file)"
    return None


def _load_backends(args: argparse.Namespace) -> tuple[dict[str, Backend], list[BackendResult]]:
    """Backends that loaded, and a failed result for each one that did not."""
    from mobilenetv3_tipc.inference.onnx_predictor import OnnxPredictor
    from mobilenetv3_tipc.inference.paddle_predictor import InferenceOptions, PaddlePredictor

    loaders = []
    if args.model_dir:
        options = InferenceOptions(enable_mkldnn=args.enable_mkldnn, use_openvino=args.use_openvino,
                                   cpu_threads=args.cpu_threads)
        loaders.append(("paddle_inference", lambda: PaddlePredictor(args.model_dir, options)))
    if args.onnx_file:
        loaders.append(("onnxruntime", lambda: OnnxPredictor(args.onnx_file, threads=args.cpu_threads)))
    backends: dict[str, Backend] = {}
    failures = []
    for name, load in loaders:
        try:
            backends[name] = load()
        except BACKEND_ERRORS as exc:
            logger.error("%s: cannot load: %s", name, exc)
            failures.append(BackendResult(name=name, tolerance=args.tolerance, error=f"could not load: {exc}"))
    return backends, failures


def run(argv: list[str] | None) -> int:
    args = get_args_parser().parse_args(argv)
    problem = _check_inputs(args)
    if problem:
        raise UsageError(problem)
    info = _model_info(args.model_dir)
    model_name = args.model or str(info.get("model") or DEFAULT_MODEL)
    scale = args.scale if args.scale is not None else float(info.get("scale") or 1.0)
    images = list_images(args.img_path)[: args.max_images or None]
    arrays = [preprocess(p, resize_size=args.resize_size, crop_size=args.crop_size) for p in images]
    batches = [np.stack(arrays[i:i + args.batch_size]) for i in range(0, len(arrays), args.batch_size)]

    from mobilenetv3_tipc.inference.agreement import DygraphReference

    try:
        reference = DygraphReference(model_name, args.pretrained, num_classes=args.num_classes, scale=scale)
    except (FileNotFoundError, IsADirectoryError, ValueError, KeyError) as exc:
        raise UsageError(f"reference model: {exc}") from exc
    backends, load_failures = _load_backends(args)
    names = [str(p) for p in images]
    ref, results = compare_backends(reference, backends, batches, names, tolerance=args.tolerance)
    for failure in load_failures:
        failure.images = len(names)
        results.append(failure)

    print(f"agreement gate: {len(names)} images from {args.img_path}; reference = dygraph {model_name} "
          f"(scale {scale}) from {args.pretrained}, {ref.shape[1]} classes")
    for backend in backends.values():
        if hasattr(backend, "engine_line"):
            print(backend.engine_line())
    print(format_table(results, args.tolerance))
    strength = reference_strength(ref)
    print(f"reference mean top-1 probability: {strength:.4f} (uniform would be {1.0 / ref.shape[1]:.4f})")
    if strength < 1.5 / ref.shape[1]:
        logger.warning("the reference outputs are near-uniform (random or barely trained weights?): "
                       "agreement is still checked, but it says little about real predictions")
    if len(ref) > 1 and float(np.abs(ref - ref[0]).max()) <= args.tolerance:
        logger.warning("the reference gives the same output for every image: these weights ignore the input, "
                       "so the gate only compares the classifier head; use trained weights for a real check")
    print(verdict(results))
    if args.save_json:
        _save_json(args.save_json, results, args.tolerance, names)
    return EXIT_OK if all_agree(results) else EXIT_FAILED


def main(argv: list[str] | None = None) -> int:
    return run_main(run, argv, usage_errors=(FileNotFoundError,))


def _save_json(path: str, results: list[BackendResult], tolerance: float, names: list[str]) -> None:
    payload = {
        "tolerance": tolerance,
        "images": names,
        "agree": all_agree(results),
        "backends": [
            {"name": r.name, "reference": r.is_reference, "passed": r.passed, "top1_agree": r.top1_agree,
             "ties": r.ties, "images": r.images,
             "max_abs_diff": r.max_abs_diff if r.error is None and math.isfinite(r.max_abs_diff) else None,
             "error": r.error}
            for r in results
        ],
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
