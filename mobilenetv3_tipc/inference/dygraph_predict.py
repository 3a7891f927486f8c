"""Classify one image (or a folder) with a dygraph MobileNetV3 and ``.pdparams`` weights.

    python tools/predict.py --pretrained=./mobilenet_v3_small_pretrained.pdparams --img-path=images/demo.jpg

prints ``class_id: 8, prob: 0.9091238975524902`` (the seed's format) and, with
``--topk N``, the N best classes with their names (ImageNet-1k names for a
1000-class model, else the ``label_list.txt`` saved next to the weights).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from mobilenetv3_tipc.cli import EXIT_FAILED, EXIT_OK, UnsupportedConfig, add_flag, run_main
from mobilenetv3_tipc.data.labels import labels_for
from mobilenetv3_tipc.data.postprocess import format_topk, topk
from mobilenetv3_tipc.data.preprocess import CROP_SIZE, RESIZE_SIZE, ImageDecodeError, list_images, preprocess

logger = logging.getLogger("predict")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mobilenet_v3_small", help="model name (default: %(default)s)")
    parser.add_argument("--pretrained", required=True, help="weights (.pdparams)")
    add_flag(parser, "img-path", default="./images/demo.jpg", help="an image file or a folder")
    parser.add_argument("--device", default="cpu", choices=("cpu", "gpu"), help="default: cpu")
    add_flag(parser, "num-classes", type=int, default=None,
             help="classes (default: read from the weights)")
    parser.add_argument("--scale", type=float, default=1.0, help="width multiplier (default: 1.0)")
    parser.add_argument("--topk", type=int, default=1, help="print the k best classes when k > 1 (default: 1)")
    add_flag(parser, "resize-size", type=int, default=RESIZE_SIZE, help="default: 256")
    add_flag(parser, "crop-size", type=int, default=CROP_SIZE, help="default: 224")
    return parser


def run(argv: list[str] | None) -> int:
    args = get_args_parser().parse_args(argv)
    import numpy as np
    import paddle

    from mobilenetv3_tipc.hardware import cuda_available
    from mobilenetv3_tipc.model.checkpoint import model_from_checkpoint

    if args.device == "gpu" and not cuda_available():
        raise UnsupportedConfig("--device gpu needs a CUDA build of Paddle and a GPU; use --device cpu")
    paddle.set_device(args.device)
    images = list_images(args.img_path)
    net = model_from_checkpoint(args.model, args.pretrained, num_classes=args.num_classes, scale=args.scale)
    labels = labels_for(net.num_classes, Path(args.pretrained).parent)
    failed = False
    for path in images:
        try:
            batch = preprocess(path, resize_size=args.resize_size, crop_size=args.crop_size)[np.newaxis]
        except ImageDecodeError as exc:
            logger.error("%s", exc)
            failed = True
            continue
        with paddle.no_grad():
            probs = paddle.nn.functional.softmax(net(paddle.to_tensor(batch)), axis=-1).numpy()
        pred = topk(probs, max(1, args.topk), labels)[0]
        if len(images) > 1:
            print(f"image_name: {path}")
        print(f"class_id: {pred.class_id}, prob: {pred.prob}")
        if args.topk > 1:
            print(format_topk(pred))
    return EXIT_FAILED if failed else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    return run_main(run, argv, usage_errors=(FileNotFoundError, IsADirectoryError, ValueError))


if __name__ == "__main__":
    sys.exit(main())
