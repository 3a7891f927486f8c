"""Export a trained MobileNetV3 to a Paddle inference model.

    python tools/export_model.py --model=mobilenet_v3_small --pretrained=W.pdparams \
        --save-inference-dir=./inference

writes into ``--save-inference-dir``:

* ``inference.json``      the PIR program (Paddle 3.x; ``.pdmodel`` with ``--legacy-format``)
* ``inference.pdiparams`` the weights
* ``model_info.json``     model name, classes, input size and preprocessing, and the size and
  sha256 of each program/params file (checked by the predictors: :mod:`mobilenetv3_tipc.export.manifest`)
* ``label_list.txt``      class names, copied from the training output when present

With ``--pact_quant`` or ``--quant`` the weights come from quant-aware training
(``train.py --pact_quant``) and the result is an int8 model (legacy ``inference.pdmodel``
with quantize/dequantize ops, plus ``quantization.json``) that
``deploy/inference_python/infer.py --precision int8`` runs with oneDNN. The file names are
those of :mod:`mobilenetv3_tipc.export.layout`. The folder is written under a temporary name
and renamed into place, replacing an older export of the same folder as a whole.

The program has a dynamic batch dimension (input ``[-1, 3, S, S]`` named
``input``) and ends in a softmax, so its output is class probabilities.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path

from mobilenetv3_tipc.cli import EXIT_OK, UsageError, add_flag, reexec_without_pir, run_main
from mobilenetv3_tipc.data.preprocess import CROP_SIZE, IMAGENET_MEAN, IMAGENET_STD, RESIZE_SIZE
from mobilenetv3_tipc.export import layout
from mobilenetv3_tipc.export.atomic import replace_dir_atomic
from mobilenetv3_tipc.export.manifest import record_model_files

logger = logging.getLogger("export_model")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mobilenet_v3_small", help="model name (default: %(default)s)")
    parser.add_argument("--pretrained", default=None, help="weights (.pdparams) to export; random if omitted")
    add_flag(parser, "save-inference-dir", default="./inference",
             help="output directory (default: %(default)s)")
    add_flag(parser, "num-classes", type=int, default=None,
             help="classes (default: read from the weights, else 1000)")
    parser.add_argument("--scale", type=float, default=1.0, help="width multiplier (default: 1.0)")
    add_flag(parser, "img-size", type=int, default=CROP_SIZE, help="input size (default: 224)")
    parser.add_argument("--device", default="cpu", help="accepted for compatibility; export runs on CPU")
    add_flag(parser, "legacy-format", action="store_true",
             help="write a legacy inference.pdmodel (FLAGS_enable_pir_api=0) instead of .json")
    add_flag(parser, "pact-quant", action="store_true",
             help="--pretrained comes from train.py --pact_quant: export an int8 model")
    parser.add_argument("--quant", action="store_true",
                        help="--pretrained comes from train.py --quant: export an int8 model")
    return parser


def needs_legacy_mode(args: argparse.Namespace) -> bool:
    return bool(args.legacy_format or args.pact_quant or args.quant)


def export(args: argparse.Namespace) -> Path:
    import paddle

    from mobilenetv3_tipc.model.checkpoint import build_from_checkpoint, read_checkpoint

    paddle.set_device("cpu")
    quant_mode = "pact" if args.pact_quant else "qat" if args.quant else None
    if quant_mode and not args.pretrained:
        raise ValueError(f"--{'pact_quant' if args.pact_quant else 'quant'} needs --pretrained "
                         "(the latest.pdparams of train.py --pact_quant/--quant)")
    checkpoint = read_checkpoint(args.pretrained) if args.pretrained else None
    if checkpoint is not None and quant_mode and not checkpoint.quant_aware:
        raise ValueError(f"{args.pretrained} holds float weights, not a train.py --pact_quant/--quant checkpoint "
                         "(for post-training int8 use deploy/ptq_python/post_quant.py)")
    if checkpoint is None:
        logger.warning("no --pretrained given: exporting randomly initialised weights")
    net, quanter = build_from_checkpoint(args.model, checkpoint, num_classes=args.num_classes, scale=args.scale,
                                         quant_mode=quant_mode)
    num_classes = net.num_classes
    out_dir = Path(args.save_inference_dir)
    if out_dir.resolve() == Path.cwd().resolve():
        raise UsageError("--save-inference-dir must be a folder of its own, not the current directory "
                         "(the export replaces the whole folder)")
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

    def build(folder: Path) -> None:
        if quanter is not None:
            from mobilenetv3_tipc.training.quant_aware import save_int8_inference

            save_int8_inference(quanter, net, folder, args.img_size,
                                summary={"quant": quant_mode, "pact": quant_mode == "pact",
                                         "weights": str(args.pretrained)})
        else:
            net.eval()
            wrapped = paddle.nn.Sequential(net, paddle.nn.Softmax())
            wrapped.eval()
            spec = [paddle.static.InputSpec([None, 3, args.img_size, args.img_size], "float32", name="input")]
            static = paddle.jit.to_static(wrapped, input_spec=spec, full_graph=True)
            paddle.jit.save(static, str(folder / layout.MODEL_PREFIX))
            if not args.legacy_format:  # the same network as inference.pdmodel, for the OpenVINO engine
                from mobilenetv3_tipc.export.legacy_program import save_legacy_program

                save_legacy_program(wrapped, spec, folder)
        if args.pretrained:
            labels = Path(args.pretrained).with_name(layout.LABEL_LIST)
            if labels.is_file():
                shutil.copyfile(labels, folder / layout.LABEL_LIST)
        record_model_files(folder, info)

    # built in a temporary sibling folder, then renamed into place: an interrupted (re-)export
    # leaves the previous folder as it was, never a mix of two exports
    return replace_dir_atomic(build, out_dir)


def run(argv: list[str] | None) -> int:
    args = get_args_parser().parse_args(argv)
    if needs_legacy_mode(args):
        # The PIR switch is read when paddle is imported, so re-run in a child process.
        code = reexec_without_pir("mobilenetv3_tipc.export.exporter", argv)
        if code is not None:
            return code
    out_dir = export(args)
    files = ", ".join(sorted(p.name for p in out_dir.iterdir() if p.is_file()))
    logger.info("inference model saved to %s (%s)", out_dir, files)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    return run_main(run, argv)


if __name__ == "__main__":
    sys.exit(main())
