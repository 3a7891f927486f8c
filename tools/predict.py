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

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from deploy.options import EXIT_FAILED, EXIT_UNSUPPORTED, EXIT_USAGE  # noqa: E402
from vision.labels import labels_for  # noqa: E402
from vision.postprocess import format_topk, topk  # noqa: E402
from vision.preprocess import CROP_SIZE, RESIZE_SIZE, ImageDecodeError, list_images, preprocess  # noqa: E402

logger = logging.getLogger("predict")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mobilenet_v3_small", help="model name (default: %(default)s)")
    parser.add_argument("--pretrained", required=True, help="weights (.pdparams)")
    parser.add_argument("--img-path", "--img_path", default="./images/demo.jpg", help="an image file or a folder")
    parser.add_argument("--device", default="cpu", choices=("cpu", "gpu"), help="default: cpu")
    parser.add_argument("--num-classes", "--num_classes", type=int, default=None,
                        help="classes (default: read from the weights)")
    parser.add_argument("--scale", type=float, default=1.0, help="width multiplier (default: 1.0)")
    parser.add_argument("--topk", type=int, default=1, help="print the k best classes when k > 1 (default: 1)")
    parser.add_argument("--resize-size", "--resize_size", type=int, default=RESIZE_SIZE, help="default: 256")
    parser.add_argument("--crop-size", "--crop_size", type=int, default=CROP_SIZE, help="default: 224")
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", force=True)
    args = get_args_parser().parse_args(argv)
    import numpy as np
    import paddle

    from deploy.options import cuda_available
    from model import build_model
    from model.weights import load_weights, num_classes_of, read_state_dict

    if args.device == "gpu" and not cuda_available():
        print("SKIPPED: --device gpu needs a CUDA build of Paddle and a GPU; use --device cpu", file=sys.stderr)
        return EXIT_UNSUPPORTED
    paddle.set_device(args.device)
    try:
        images = list_images(args.img_path)
        num_classes = args.num_classes or num_classes_of(read_state_dict(args.pretrained)) or 1000
        net = build_model(args.model, num_classes=num_classes, scale=args.scale)
        load_weights(net, args.pretrained)
    except (FileNotFoundError, IsADirectoryError, ValueError) as exc:
        logger.error("%s", exc)
        return EXIT_USAGE
    net.eval()
    labels = labels_for(num_classes, Path(args.pretrained).parent)
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
    return EXIT_FAILED if failed else 0


if __name__ == "__main__":
    sys.exit(main())
