"""ONNX Runtime inference for a MobileNetV3 converted with paddle2onnx.

    python deploy/onnx_python/infer.py --onnx-file=./inference/mobilenet_v3_small_onnx/model.onnx \
        --img-path=./images/demo.jpg

Uses the same preprocessing as every other path (``vision/preprocess.py``) and
prints the upstream format::

    ONNXRuntime predict:
    class_id: 8, prob: 0.9091271758079529

With a folder (flat, or ImageNet-style class folders) each result is preceded
by ``image_name: <path>``. ``--benchmark`` adds an AutoLog-style timing report.
Exit codes: 0 ok, 1 failed (corrupt model or image), 2 bad arguments or missing
files, 77 the combination cannot run on this machine (``--use-gpu`` without a
GPU build of onnxruntime; one ``SKIPPED:`` line on stderr).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


from deploy.batch_classifier import classify_images  # noqa: E402
from deploy.benchmark_report import StageTimer, format_report  # noqa: E402
from deploy.options import EXIT_FAILED, EXIT_OK, EXIT_UNSUPPORTED, EXIT_USAGE, UnsupportedConfig, add_bool_flag  # noqa: E402
from vision.postprocess import format_topk  # noqa: E402
from vision.preprocess import CROP_SIZE, RESIZE_SIZE, list_images  # noqa: E402

logger = logging.getLogger("onnx_infer")

DEFAULT_ONNX_FILE = "./inference/mobilenet_v3_small_onnx/model.onnx"


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--onnx-file", "--onnx_file", default=DEFAULT_ONNX_FILE,
                        help="the .onnx model (default: %(default)s)")
    parser.add_argument("--img-path", "--img_path", default="./images/demo.jpg",
                        help="an image file, a folder, or a folder of class folders (default: %(default)s)")
    parser.add_argument("--batch-size", "--batch_size", type=int, default=1, help="images per run (default: 1)")
    parser.add_argument("--threads", "--cpu-threads", "--cpu_threads", "--cpu_num_threads", type=int, default=0,
                        help="onnxruntime intra-op threads (default: 0 = every available core)")
    add_bool_flag(parser, "--use-gpu", "--use_gpu", default=False,
                  help="use the TensorRT/CUDA execution providers (exit 77 when onnxruntime has none)")
    add_bool_flag(parser, "--benchmark", default=False, help="print a timing report")
    parser.add_argument("--warmup", type=int, default=0, help="batches run before timing starts (default: 0)")
    parser.add_argument("--topk", type=int, default=1, help="also print the top-k classes when > 1")
    parser.add_argument("--resize-size", "--resize_size", type=int, default=RESIZE_SIZE, help="default: 256")
    parser.add_argument("--crop-size", "--crop_size", type=int, default=CROP_SIZE, help="default: 224")
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = get_args_parser().parse_args(argv)
    if args.batch_size < 1:
        logger.error("--batch-size must be at least 1, got %d", args.batch_size)
        return EXIT_USAGE
    if args.topk < 1 or args.warmup < 0 or args.threads < 0:
        logger.error("--topk must be >= 1, --warmup and --threads >= 0")
        return EXIT_USAGE

    from deploy.onnx_python.predictor import OnnxModelError, OnnxPredictor

    try:
        predictor = OnnxPredictor(args.onnx_file, threads=args.threads, use_gpu=args.use_gpu)
        images = list_images(args.img_path)
    except UnsupportedConfig as exc:
        print(f"SKIPPED: {exc}", file=sys.stderr)
        return EXIT_UNSUPPORTED
    except FileNotFoundError as exc:
        logger.error("%s", exc)
        return EXIT_USAGE
    except OnnxModelError as exc:
        logger.error("%s", exc)
        return EXIT_FAILED

    timer = StageTimer(warmup=args.warmup)
    print("ONNXRuntime predict:")
    try:
        results, failed = classify_images(
            images, predictor.run, timer, batch_size=args.batch_size, resize_size=args.resize_size,
            crop_size=args.crop_size, k=args.topk, label_dir=Path(args.onnx_file).parent,
        )
    except OnnxModelError as exc:
        logger.error("%s", exc)
        return EXIT_FAILED
    for result in results:
        pred = result.prediction
        if len(images) > 1:
            print(f"image_name: {result.path}")
        print(f"class_id: {pred.class_id}, prob: {pred.prob}")
        if args.topk > 1:
            print(f"  {format_topk(pred)}")
    if args.benchmark:
        print(format_report(
            timer, runtime=f"onnxruntime {_ort_version()}", model_name="mobilenet_v3", model_dir=args.onnx_file,
            precision="fp32", batch_size=args.batch_size, config=predictor.describe(),
            input_shape=f"[{args.batch_size}, 3, {args.crop_size}, {args.crop_size}]",
        ))
    return EXIT_FAILED if failed else EXIT_OK


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


if __name__ == "__main__":
    sys.exit(main())
