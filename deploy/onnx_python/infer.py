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

import numpy as np  # noqa: E402

from deploy.benchmark_report import StageTimer, format_report  # noqa: E402
from deploy.onnx_python.images import collect_images  # noqa: E402
from deploy.options import EXIT_FAILED, EXIT_OK, EXIT_UNSUPPORTED, EXIT_USAGE, UnsupportedConfig, add_bool_flag  # noqa: E402
from vision.labels import labels_for  # noqa: E402
from vision.postprocess import format_topk, topk  # noqa: E402
from vision.preprocess import CROP_SIZE, RESIZE_SIZE, ImageDecodeError, preprocess  # noqa: E402

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
        images = collect_images(args.img_path)
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
    batches = [images[i:i + args.batch_size] for i in range(0, len(images), args.batch_size)]
    # Warm-up batches run the first batch again so every image is still reported once.
    schedule = [batches[0]] * args.warmup + batches
    labels = None
    failed = False
    print("ONNXRuntime predict:")
    for index, batch_paths in enumerate(schedule):
        warming = index < args.warmup
        try:
            with timer.stage("preprocess"):
                batch = np.stack([
                    preprocess(path, resize_size=args.resize_size, crop_size=args.crop_size)
                    for path in batch_paths
                ])
        except ImageDecodeError as exc:
            logger.error("%s", exc)
            failed = True
            timer.end_batch(0)
            continue
        try:
            with timer.stage("inference"):
                probs = predictor.run(batch)
        except OnnxModelError as exc:
            logger.error("%s", exc)
            return EXIT_FAILED
        with timer.stage("postprocess"):
            if labels is None:
                labels = labels_for(probs.shape[1], Path(args.onnx_file).parent)
            preds = topk(probs, args.topk, labels)
        timer.end_batch(len(batch_paths))
        if warming:
            continue
        for path, pred in zip(batch_paths, preds, strict=True):
            if len(images) > 1:
                print(f"image_name: {path}")
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
