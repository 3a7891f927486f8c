"""Paddle Inference for an exported MobileNetV3.

    python deploy/inference_python/infer.py --model-dir=./inference --img-path=./images/demo.jpg

Prints ``image_name: X, class_id: N, prob: P`` per image. On CPU, fp32 runs on
Paddle Inference's OpenVINO engine when the model directory holds the legacy
``inference.pdmodel`` that ``tools/export_model.py`` writes (the fastest Paddle
path here), else on oneDNN; ``--use-openvino=False`` forces oneDNN and
``--enable-mkldnn=False`` Paddle's plain kernels. int8 and fp16 use oneDNN. ``--benchmark`` adds an
AutoLog-style timing report. Exit codes: 0 ok, 1 failed, 2 bad arguments or
missing files, 77 the combination cannot run on this machine (see
``deploy/options.py``).
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
from deploy.options import (  # noqa: E402
    EXIT_FAILED,
    EXIT_UNSUPPORTED,
    EXIT_USAGE,
    UnsupportedConfig,
    add_bool_flag,
)
from vision.postprocess import format_topk  # noqa: E402
from vision.preprocess import CROP_SIZE, RESIZE_SIZE, list_images  # noqa: E402

logger = logging.getLogger("infer")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", "--model_dir", default="./inference", help="exported model directory")
    parser.add_argument("--img-path", "--img_path", default="./images/demo.jpg", help="an image file or a folder")
    parser.add_argument("--batch-size", "--batch_size", type=int, default=1, help="images per run (default: 1)")
    add_bool_flag(parser, "--use-gpu", "--use_gpu", default=False, help="run on GPU")
    parser.add_argument("--gpu-id", "--gpu_id", type=int, default=0, help="GPU id (default: 0)")
    add_bool_flag(parser, "--enable-mkldnn", "--enable_mkldnn", "--use-mkldnn", "--use_mkldnn",
                  default=True, help="use oneDNN on CPU")
    parser.add_argument("--cpu-threads", "--cpu_threads", "--cpu-num-threads", type=int, default=0,
                        help="CPU math threads (default: 0 = every available core)")
    add_bool_flag(parser, "--use-openvino", "--use_openvino", default=True,
                  help="fp32 on CPU with --enable-mkldnn: use the OpenVINO engine when inference.pdmodel exists")
    add_bool_flag(parser, "--use-tensorrt", "--use_tensorrt", default=False, help="use TensorRT (GPU only)")
    parser.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp32", help="default: fp32")
    add_bool_flag(parser, "--ir-optim", "--ir_optim", default=True, help="apply IR graph optimisation")
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

    from deploy.inference_python.predictor import InferenceOptions, PaddlePredictor

    options = InferenceOptions(
        use_gpu=args.use_gpu, gpu_id=args.gpu_id, enable_mkldnn=args.enable_mkldnn,
        cpu_threads=args.cpu_threads, use_tensorrt=args.use_tensorrt,
        precision=args.precision, ir_optim=args.ir_optim, use_openvino=args.use_openvino,
    )
    try:
        images = list_images(args.img_path)
        predictor = PaddlePredictor(args.model_dir, options)
    except UnsupportedConfig as exc:
        print(f"SKIPPED: {exc}", file=sys.stderr)
        return EXIT_UNSUPPORTED
    except (FileNotFoundError, ValueError) as exc:
        logger.error("%s", exc)
        return EXIT_USAGE

    timer = StageTimer(warmup=args.warmup)
    try:
        results, failed = classify_images(
            images, predictor.run, timer, batch_size=args.batch_size, resize_size=args.resize_size,
            crop_size=args.crop_size, k=args.topk, label_dir=Path(args.model_dir),
        )
    except ValueError as exc:  # e.g. a --crop-size the model was not exported for
        logger.error("%s", exc)
        return EXIT_USAGE
    for result in results:
        pred = result.prediction
        print(f"image_name: {result.path}, class_id: {pred.class_id}, prob: {pred.prob}")
        if args.topk > 1:
            print(f"  {format_topk(pred)}")
    if args.benchmark:
        print(format_report(
            timer, runtime="paddle_inference", model_name="mobilenet_v3", model_dir=args.model_dir,
            precision=args.precision, batch_size=args.batch_size, config=predictor.describe(),
            input_shape=f"[{args.batch_size}, 3, {args.crop_size}, {args.crop_size}]",
        ))
    return EXIT_FAILED if failed else 0


if __name__ == "__main__":
    sys.exit(main())
