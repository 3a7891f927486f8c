"""Paddle Inference for an exported MobileNetV3.

    python deploy/inference_python/infer.py --model-dir=./inference --img-path=./images/demo.jpg

Prints ``inference engine: <name> (<settings>)``, then ``image_name: X, class_id: N, prob: P``
per image. Engines (see ``mobilenetv3_tipc/inference/engine.py``): ``--enable-mkldnn True|False``
turns oneDNN on or off exactly; ``--use-openvino auto|True|False`` (default auto) runs fp32 on
Paddle Inference's OpenVINO engine, which auto picks when the model folder holds the legacy
``inference.pdmodel`` that ``tools/export_model.py`` writes and no engine flag says otherwise.
``--benchmark`` adds an AutoLog-style timing report. Exit codes: 0 ok, 1 failed, 2 bad arguments
or missing files, 77 the combination cannot run on this machine (``mobilenetv3_tipc/cli.py``).
"""

from __future__ import annotations

import argparse
import sys

from mobilenetv3_tipc.cli import add_bool_flag, add_flag, auto_or_bool, run_main
from mobilenetv3_tipc.data.postprocess import format_topk
from mobilenetv3_tipc.inference.batch_classifier import ImageResult
from mobilenetv3_tipc.inference.classify_cli import (
    add_classify_flags,
    check_classify_args,
    classify_and_print,
    list_images,
)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flag(parser, "model-dir", default="./inference", help="exported model directory")
    add_classify_flags(parser)
    add_bool_flag(parser, "use-gpu", default=False, help="run on GPU")
    add_flag(parser, "gpu-id", type=int, default=0, help="GPU id (default: 0)")
    add_flag(parser, "enable-mkldnn", "use-mkldnn", type=auto_or_bool, nargs="?", const=True, default=None,
             metavar="BOOL", help="oneDNN on CPU: True on, False off (default: on, unless auto picks OpenVINO)")
    add_flag(parser, "use-openvino", type=auto_or_bool, nargs="?", const=True, default=None,
             metavar="auto|BOOL", help="fp32 on CPU on the OpenVINO engine (default: auto)")
    add_flag(parser, "cpu-threads", "cpu-num-threads", type=int, default=0,
             help="CPU math threads (default: 0 = every available core)")
    add_bool_flag(parser, "use-tensorrt", default=False, help="use TensorRT (GPU only)")
    parser.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp32", help="default: fp32")
    add_bool_flag(parser, "ir-optim", default=True, help="apply IR graph optimisation")
    return parser


def print_result(result: ImageResult, topk: int) -> None:
    pred = result.prediction
    print(f"image_name: {result.path}, class_id: {pred.class_id}, prob: {pred.prob}")
    if topk > 1:
        print(f"  {format_topk(pred)}")


def run(argv: list[str] | None) -> int:
    args = get_args_parser().parse_args(argv)
    check_classify_args(args)
    from mobilenetv3_tipc.inference.paddle_predictor import InferenceOptions, PaddlePredictor

    options = InferenceOptions(
        use_gpu=args.use_gpu, gpu_id=args.gpu_id, enable_mkldnn=args.enable_mkldnn,
        cpu_threads=args.cpu_threads, use_tensorrt=args.use_tensorrt,
        precision=args.precision, ir_optim=args.ir_optim, use_openvino=args.use_openvino,
    )
    images = list_images(args.img_path)
    predictor = PaddlePredictor(args.model_dir, options)
    return classify_and_print(
        predictor, images, args, lambda result: print_result(result, args.topk), label_dir=predictor.model_dir,
        runtime="paddle_inference", model_dir=args.model_dir, precision=args.precision,
    )


def main(argv: list[str] | None = None) -> int:
    return run_main(run, argv, usage_errors=(FileNotFoundError, ValueError))


if __name__ == "__main__":
    sys.exit(main())
