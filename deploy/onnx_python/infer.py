"""ONNX Runtime inference for a MobileNetV3 converted with paddle2onnx.

    python deploy/onnx_python/infer.py --onnx-file=./inference/mobilenet_v3_small_onnx/model.onnx \
        --img-path=./images/demo.jpg

Uses the same preprocessing as every other path (``mobilenetv3_tipc/data/preprocess.py``),
prints ``inference engine: onnxruntime (<settings>)`` and then the upstream format::

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
import sys
from pathlib import Path

from mobilenetv3_tipc.cli import UsageError, add_bool_flag, add_flag, run_main
from mobilenetv3_tipc.data.postprocess import format_topk
from mobilenetv3_tipc.inference.batch_classifier import ImageResult
from mobilenetv3_tipc.inference.classify_cli import (
    add_classify_flags,
    check_classify_args,
    classify_and_print,
    list_images,
)

DEFAULT_ONNX_FILE = "./inference/mobilenet_v3_small_onnx/model.onnx"


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flag(parser, "onnx-file", default=DEFAULT_ONNX_FILE, help="the .onnx model (default: %(default)s)")
    add_classify_flags(parser)
    add_flag(parser, "threads", "cpu-threads", "cpu-num-threads", type=int, default=0,
             help="onnxruntime intra-op threads (default: 0 = every available core)")
    add_bool_flag(parser, "use-gpu", default=False,
                  help="use the TensorRT/CUDA execution providers (exit 77 when onnxruntime has none)")
    return parser


def run(argv: list[str] | None) -> int:
    args = get_args_parser().parse_args(argv)
    check_classify_args(args)
    if args.threads < 0:
        raise UsageError("--threads must be >= 0")
    import onnxruntime

    from mobilenetv3_tipc.inference.onnx_predictor import OnnxPredictor

    predictor = OnnxPredictor(args.onnx_file, threads=args.threads, use_gpu=args.use_gpu)
    images = list_images(args.img_path)

    def print_result(result: ImageResult) -> None:
        if len(images) > 1:
            print(f"image_name: {result.path}")
        print(f"class_id: {result.prediction.class_id}, prob: {result.prediction.prob}")
        if args.topk > 1:
            print(f"  {format_topk(result.prediction)}")

    return classify_and_print(
        predictor, images, args, print_result, header="ONNXRuntime predict:", label_dir=Path(args.onnx_file).parent,
        runtime=f"onnxruntime {onnxruntime.__version__}", model_dir=args.onnx_file, precision="fp32",
    )


def main(argv: list[str] | None = None) -> int:
    return run_main(run, argv, usage_errors=(FileNotFoundError,))


if __name__ == "__main__":
    sys.exit(main())
