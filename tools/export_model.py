"""Export a trained MobileNetV3 to a Paddle inference model.

    python tools/export_model.py --model=mobilenet_v3_small --pretrained=W.pdparams \
        --save-inference-dir=./inference

writes into ``--save-inference-dir``:

* ``inference.json``      the PIR program (Paddle 3.x; ``.pdmodel`` with ``--legacy-format``)
* ``inference.pdiparams`` the weights
* ``model_info.json``     model name, classes, input size and preprocessing
* ``label_list.txt``      class names, copied from the training output when present

With ``--pact_quant`` or ``--quant`` the weights come from quant-aware training
(``train.py --pact_quant``) and the result is an int8 model (legacy ``inference.pdmodel``
with quantize/dequantize ops, plus ``quantization.json``) that
``deploy/inference_python/infer.py --precision int8`` runs with oneDNN.

The program has a dynamic batch dimension (input ``[-1, 3, S, S]`` named
``input``) and ends in a softmax, so its output is class probabilities.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from vision.labels import LABEL_LIST_NAME  # noqa: E402
from vision.preprocess import CROP_SIZE, IMAGENET_MEAN, IMAGENET_STD, RESIZE_SIZE  # noqa: E402

logger = logging.getLogger("export_model")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mobilenet_v3_small", help="model name (default: %(default)s)")
    parser.add_argument("--pretrained", default=None, help="weights (.pdparams) to export; random if omitted")
    parser.add_argument("--save-inference-dir", "--save_inference_dir", default="./inference",
                        help="output directory (default: %(default)s)")
    parser.add_argument("--num-classes", "--num_classes", type=int, default=None,
                        help="classes (default: read from the weights, else 1000)")
    parser.add_argument("--scale", type=float, default=1.0, help="width multiplier (default: 1.0)")
    parser.add_argument("--img-size", "--img_size", type=int, default=CROP_SIZE, help="input size (default: 224)")
    parser.add_argument("--device", default="cpu", help="accepted for compatibility; export runs on CPU")
    parser.add_argument("--legacy-format", action="store_true",
                        help="write a legacy inference.pdmodel (FLAGS_enable_pir_api=0) instead of .json")
    parser.add_argument("--pact_quant", "--pact-quant", action="store_true",
                        help="--pretrained comes from train.py --pact_quant: export an int8 model")
    parser.add_argument("--quant", action="store_true",
                        help="--pretrained comes from train.py --quant: export an int8 model")
    return parser


def needs_legacy_mode(args: argparse.Namespace) -> bool:
    return bool(args.legacy_format or args.pact_quant or args.quant)


def export(args: argparse.Namespace) -> Path:
    import paddle

    from model import build_model
    from model.weights import is_quant_aware_state, load_weights, num_classes_of, read_state_dict

    paddle.set_device("cpu")
    num_classes = args.num_classes
    quant_mode = "pact" if args.pact_quant else "qat" if args.quant else None
    if quant_mode and not args.pretrained:
        raise ValueError(f"--{'pact_quant' if args.pact_quant else 'quant'} needs --pretrained "
                         "(the latest.pdparams of train.py --pact_quant/--quant)")
    if args.pretrained:
        state = read_state_dict(args.pretrained)
        if is_quant_aware_state(state) != bool(quant_mode):
            raise ValueError(
                f"{args.pretrained} was saved by quant-aware training; add --pact_quant or --quant"
                if not quant_mode else
                f"{args.pretrained} holds float weights, not a train.py --pact_quant/--quant checkpoint "
                "(for post-training int8 use deploy/ptq_python/post_quant.py)"
            )
        found = num_classes_of(state)
        if num_classes is None:
            num_classes = found
        elif found is not None and found != num_classes:
            raise ValueError(f"--num-classes {num_classes} but {args.pretrained} has {found} classes")
    num_classes = num_classes or 1000
    net = build_model(args.model, num_classes=num_classes, scale=args.scale)
    out_dir = Path(args.save_inference_dir)
    if quant_mode:
        from deploy.ptq_python.qat import build_quant_aware, save_int8_inference

        quanter = build_quant_aware(pact=quant_mode == "pact")
        quanter.quantize(net)
        load_weights(net, args.pretrained)
        save_int8_inference(quanter, net, out_dir, args.img_size,
                            summary={"quant": quant_mode, "pact": quant_mode == "pact",
                                     "weights": str(args.pretrained)})
    else:
        if args.pretrained:
            load_weights(net, args.pretrained)
        else:
            logger.warning("no --pretrained given: exporting randomly initialised weights")
        net.eval()
        wrapped = paddle.nn.Sequential(net, paddle.nn.Softmax())
        wrapped.eval()
        spec = [paddle.static.InputSpec([None, 3, args.img_size, args.img_size], "float32", name="input")]
        static = paddle.jit.to_static(wrapped, input_spec=spec, full_graph=True)
        out_dir.mkdir(parents=True, exist_ok=True)
        paddle.jit.save(static, str(out_dir / "inference"))
        if not args.legacy_format:  # the same network as inference.pdmodel, for the OpenVINO engine
            from deploy.inference_python.legacy_program import save_legacy_program

            save_legacy_program(wrapped, spec, out_dir)

    info = {
        "model": args.model,
        "scale": args.scale,
        "num_classes": num_classes,
        "input_name": "input",
        "input_shape": [-1, 3, args.img_size, args.img_size],
        "output": "softmax probabilities",
        "resize_size": RESIZE_SIZE if args.img_size == CROP_SIZE else int(args.img_size / 0.875),
        "crop_size": args.img_size,
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
        "weights": str(args.pretrained) if args.pretrained else None,
        "quantized": quant_mode,
        "paddle_version": paddle.__version__,
    }
    (out_dir / "model_info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    if args.pretrained:
        labels = Path(args.pretrained).with_name(LABEL_LIST_NAME)
        if labels.is_file():
            shutil.copyfile(labels, out_dir / LABEL_LIST_NAME)
    return out_dir


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = get_args_parser().parse_args(argv)
    if needs_legacy_mode(args) and os.environ.get("FLAGS_enable_pir_api") != "0":  # noqa: SIM112 (Paddle flag name)
        # The PIR switch is read when paddle is imported, so re-run in a child process.
        env = dict(os.environ, FLAGS_enable_pir_api="0")
        return subprocess.call([sys.executable, __file__, *(argv if argv is not None else sys.argv[1:])], env=env)
    try:
        out_dir = export(args)
    except (FileNotFoundError, IsADirectoryError, ValueError) as exc:
        logger.error("%s", exc)
        return 1
    files = ", ".join(sorted(p.name for p in out_dir.iterdir() if p.is_file()))
    logger.info("inference model saved to %s (%s)", out_dir, files)
    return 0


if __name__ == "__main__":
    sys.exit(main())
