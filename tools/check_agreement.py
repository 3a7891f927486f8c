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

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from deploy.agreement import (  # noqa: E402
    BACKEND_ERRORS,
    DEFAULT_TOLERANCE,
    BackendResult,
    Predictor,
    all_agree,
    compare_backends,
    format_table,
    reference_strength,
    verdict,
)
from deploy.options import EXIT_FAILED, EXIT_OK, EXIT_USAGE, add_bool_flag  # noqa: E402
from vision.preprocess import (  # noqa: E402
    CROP_SIZE,
    RESIZE_SIZE,
    ImageDecodeError,
    list_images,
    preprocess,
)

logger = logging.getLogger("check_agreement")

DEFAULT_MODEL = "mobilenet_v3_small"


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None,
                        help=f"model name (default: model_info.json of --model-dir, else {DEFAULT_MODEL})")
    parser.add_argument("--pretrained", required=True, help="weights (.pdparams) of the reference dygraph model")
    parser.add_argument("--num-classes", "--num_classes", type=int, default=None,
                        help="classes (default: read from the weights)")
    parser.add_argument("--scale", type=float, default=None,
                        help="width multiplier (default: model_info.json of --model-dir, else 1.0)")
    parser.add_argument("--model-dir", "--model_dir", default=None,
                        help="exported Paddle model (inference.json + .pdiparams) to run with Paddle Inference")
    parser.add_argument("--onnx-file", "--onnx_file", default=None, help="ONNX model to run with ONNX Runtime")
    parser.add_argument("--img-path", "--img_path", default="./images/demo.jpg",
                        help="an image, a folder, or a folder of class folders (default: %(default)s)")
    parser.add_argument("--max-images", "--max_images", type=int, default=0,
                        help="use at most this many images (default: 0 = all)")
    parser.add_argument("--batch-size", "--batch_size", type=int, default=8, help="images per run (default: 8)")
    parser.add_argument("--tolerance", "--atol", type=float, default=DEFAULT_TOLERANCE,
                        help="largest allowed |p_backend - p_reference| (default: %(default)g, for fp32)")
    parser.add_argument("--cpu-threads", "--cpu_threads", type=int, default=0,
                        help="CPU threads of Paddle Inference and ONNX Runtime (default: 0 = every core)")
    add_bool_flag(parser, "--enable-mkldnn", "--enable_mkldnn", default=True, help="Paddle Inference with oneDNN")
    parser.add_argument("--resize-size", "--resize_size", type=int, default=RESIZE_SIZE, help="default: 256")
    parser.add_argument("--crop-size", "--crop_size", type=int, default=CROP_SIZE, help="default: 224")
    parser.add_argument("--save-json", "--save_json", default=None, help="also write the results to this JSON file")
    return parser


def _model_info(model_dir: str | None) -> dict[str, object]:
    if not model_dir:
        return {}
    path = Path(model_dir) / "model_info.json"
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


def _load_backends(args: argparse.Namespace) -> tuple[dict[str, Predictor], list[BackendResult]]:
    """Backends that loaded, and a failed result for each one that did not."""
    from deploy.inference_python.predictor import InferenceOptions, PaddlePredictor
    from deploy.onnx_python.predictor import OnnxPredictor

    loaders = []
    if args.model_dir:
        options = InferenceOptions(enable_mkldnn=args.enable_mkldnn, cpu_threads=args.cpu_threads)
        loaders.append(("paddle_inference", lambda: PaddlePredictor(args.model_dir, options)))
    if args.onnx_file:
        loaders.append(("onnxruntime", lambda: OnnxPredictor(args.onnx_file, threads=args.cpu_threads)))
    backends: dict[str, Predictor] = {}
    failures = []
    for name, load in loaders:
        try:
            backends[name] = load()
        except BACKEND_ERRORS as exc:
            logger.error("%s: cannot load: %s", name, exc)
            failures.append(BackendResult(name=name, tolerance=args.tolerance, error=f"could not load: {exc}"))
    return backends, failures


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", force=True)
    args = get_args_parser().parse_args(argv)
    problem = _check_inputs(args)
    if problem:
        logger.error("%s", problem)
        return EXIT_USAGE
    info = _model_info(args.model_dir)
    model_name = args.model or str(info.get("model") or DEFAULT_MODEL)
    scale = args.scale if args.scale is not None else float(info.get("scale") or 1.0)
    try:
        images = list_images(args.img_path)[: args.max_images or None]
    except FileNotFoundError as exc:
        logger.error("%s", exc)
        return EXIT_USAGE
    try:
        arrays = [preprocess(p, resize_size=args.resize_size, crop_size=args.crop_size) for p in images]
    except ImageDecodeError as exc:
        logger.error("%s", exc)
        return EXIT_FAILED
    batches = [np.stack(arrays[i:i + args.batch_size]) for i in range(0, len(arrays), args.batch_size)]

    from deploy.agreement import DygraphReference

    try:
        reference = DygraphReference(model_name, args.pretrained, num_classes=args.num_classes, scale=scale)
    except (FileNotFoundError, IsADirectoryError, ValueError, KeyError) as exc:
        logger.error("reference model: %s", exc)
        return EXIT_USAGE
    backends, load_failures = _load_backends(args)
    names = [str(p) for p in images]
    ref, results = compare_backends(reference, backends, batches, names, tolerance=args.tolerance)
    for failure in load_failures:
        failure.images = len(names)
        results.append(failure)

    print(f"agreement gate: {len(names)} images from {args.img_path}; reference = dygraph {model_name} "
          f"(scale {scale}) from {args.pretrained}, {ref.shape[1]} classes")
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
