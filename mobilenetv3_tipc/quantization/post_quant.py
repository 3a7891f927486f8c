"""Post-training int8 quantization (PTQ) of an exported MobileNetV3.

    python tools/export_model.py --legacy-format --pretrained W --save-inference-dir ./inference/float_legacy
    python deploy/ptq_python/post_quant.py --model-dir ./inference/float_legacy \
        --data-dir ./lite_data/train --batch-size 4 --batch-num 4 --output-dir ./inference/int8

API: ``paddle.static.quantization.PostTrainingQuantization`` (Paddle's own static PTQ, the
engine paddleslim's ``quant_post_static`` wraps). It reads a *legacy* program
(``inference.pdmodel``), so the float model is exported with ``--legacy-format`` and this
script runs with ``FLAGS_enable_pir_api=0`` (it re-runs itself in a child process when the
flag is not set). The output directory holds ``inference.pdmodel`` + ``inference.pdiparams``
(quantize/dequantize ops in ONNX format, which Paddle Inference's oneDNN int8 passes fuse),
``model_info.json`` / ``label_list.txt`` copied from the float model, and
``quantization.json`` (the int8 marker of ``mobilenetv3_tipc/export/layout.py``, with the
calibration summary). Run it with ``infer.py --precision int8 --enable-mkldnn True``.

Exit codes: 0 ok, 1 quantization failed, 2 bad arguments, missing model or no calibration images.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from mobilenetv3_tipc.cli import EXIT_OK, UsageError, add_flag, reexec_without_pir, run_main
from mobilenetv3_tipc.data.preprocess import list_images, preprocess
from mobilenetv3_tipc.export import layout
from mobilenetv3_tipc.export.atomic import replace_dir_atomic
from mobilenetv3_tipc.export.manifest import record_model_files

logger = logging.getLogger("post_quant")

ALGOS = ("abs_max", "avg", "hist", "mse", "emd", "KL")
PROGRAM = layout.LEGACY_PROGRAM
PARAMS = layout.PARAMS
QUANT_OP_TYPES = ("conv2d", "depthwise_conv2d", "mul", "matmul", "matmul_v2")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flag(parser, "model-dir", required=True,
             help=f"float inference model in legacy format ({PROGRAM} + {PARAMS})")
    add_flag(parser, "data-dir", required=True,
             help="calibration images: a file, a folder, or a folder of class folders")
    add_flag(parser, "output-dir", required=True, help="where the int8 model is written")
    add_flag(parser, "batch-size", type=int, default=4, help="images per batch (default: 4)")
    add_flag(parser, "batch-num", type=int, default=10,
             help="calibration batches; fewer when the folder runs out (default: 10)")
    parser.add_argument("--algo", choices=ALGOS, default="abs_max",
                        help="activation threshold algorithm (default: abs_max, see the PTQ doc)")
    add_flag(parser, "hist-percent", type=float, default=0.999, help="percentile for --algo hist (default: 0.999)")
    add_flag(parser, "use-gpu", default="False", help="accepted for upstream compatibility; calibration runs on CPU")
    return parser


def check_args(args: argparse.Namespace) -> str | None:
    """An error message for bad arguments, else None."""
    if args.batch_size < 1:
        return f"--batch-size must be at least 1, got {args.batch_size}"
    if args.batch_num < 1:
        return f"--batch-num must be at least 1, got {args.batch_num}"
    model_dir = Path(args.model_dir)
    if not (model_dir / PROGRAM).is_file() or not (model_dir / PARAMS).is_file():
        hint = ""
        if (model_dir / layout.PIR_PROGRAM).is_file():
            hint = (f" (it holds a PIR {layout.PIR_PROGRAM}; PTQ needs the legacy program: "
                    "python tools/export_model.py --legacy-format ...)")
        return f"{model_dir}: {PROGRAM} and {PARAMS} not found{hint}"
    if Path(args.output_dir).resolve() == model_dir.resolve():
        return "--output-dir must differ from --model-dir"
    return None


def calibration_reader(images: list[Path], batch_size: int, batch_num: int,
                       input_name: str) -> Callable[[], Iterator[dict[str, object]]]:
    """A data_loader for PostTrainingQuantization: ``{input_name: (B,3,H,W) float32}`` batches."""
    import numpy as np

    def reader() -> Iterator[dict[str, object]]:
        for start in range(0, min(len(images), batch_size * batch_num), batch_size):
            chunk = images[start:start + batch_size]
            yield {input_name: np.stack([preprocess(path) for path in chunk])}

    return reader


def count_quant_ops(output_dir: Path) -> dict[str, int]:
    """Op-type counts of the saved program (quantize_linear/dequantize_linear and the rest)."""
    import paddle

    exe = paddle.static.Executor(paddle.CPUPlace())
    program, _, _ = paddle.static.load_inference_model(str(output_dir / layout.MODEL_PREFIX), exe)
    counts: dict[str, int] = {}
    for op in program.global_block().ops:
        counts[op.type] = counts.get(op.type, 0) + 1
    return counts


def quantize(args: argparse.Namespace, images: list[Path]) -> dict[str, object]:
    """Calibrate and save; returns the calibration summary."""
    import paddle
    from paddle.static.quantization import PostTrainingQuantization

    paddle.enable_static()
    model_dir = Path(args.model_dir)
    output_dir = Path(args.output_dir)
    info_path = model_dir / layout.MODEL_INFO
    info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else {}
    input_name = str(info.get("input_name", "input"))
    batches = min(args.batch_num, -(-len(images) // args.batch_size))
    used = min(len(images), args.batch_size * batches)
    if batches < args.batch_num:
        logger.warning("only %d images: %d calibration batches instead of %d", len(images), batches, args.batch_num)

    start = time.perf_counter()
    exe = paddle.static.Executor(paddle.CPUPlace())
    ptq = PostTrainingQuantization(
        executor=exe, model_dir=str(model_dir), model_filename=PROGRAM, params_filename=PARAMS,
        data_loader=calibration_reader(images, args.batch_size, batches, input_name),
        batch_nums=batches, algo=args.algo, hist_percent=args.hist_percent,
        quantizable_op_type=list(QUANT_OP_TYPES), round_type="round", onnx_format=True,
        is_full_quantize=False, weight_bits=8, activation_bits=8,
        weight_quantize_type="channel_wise_abs_max",
    )
    ptq.quantize()
    seconds = time.perf_counter() - start
    summary: dict[str, object] = {
        "quantized": True,
        "method": "post-training quantization (paddle.static.quantization.PostTrainingQuantization)",
        "format": "legacy program, ONNX-style quantize_linear/dequantize_linear",
        "runs_with": "infer.py --precision int8 --enable-mkldnn True (CPU oneDNN); TensorRT int8 on GPU",
        "algo": args.algo,
        "hist_percent": args.hist_percent if args.algo == "hist" else None,
        "weight_bits": 8,
        "activation_bits": 8,
        "weight_quantize_type": "channel_wise_abs_max",
        "quantizable_op_type": list(QUANT_OP_TYPES),
        "calibration": {
            "data_dir": str(args.data_dir),
            "images_found": len(images),
            "images_used": used,
            "batch_size": args.batch_size,
            "batches": batches,
            "seconds": round(seconds, 2),
        },
        "float_model_dir": str(model_dir),
        "paddle_version": paddle.__version__,
    }

    def build(folder: Path) -> None:
        ptq.save_quantized_model(str(folder), model_filename=PROGRAM, params_filename=PARAMS)
        for name in layout.METADATA_FILES:
            if (model_dir / name).is_file():
                shutil.copyfile(model_dir / name, folder / name)
        ops = count_quant_ops(folder)
        summary["quantize_linear_ops"] = ops.get("quantize_linear", 0)
        summary["dequantize_linear_ops"] = ops.get("dequantize_linear", 0)
        (folder / layout.QUANT_MARKER).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        record_model_files(folder)  # the float model's info, with this folder's files

    # a temporary sibling folder renamed into place: an interrupted run leaves the old output as it was
    replace_dir_atomic(build, output_dir)
    return summary


def run(argv: list[str] | None) -> int:
    args = get_args_parser().parse_args(argv)
    error = check_args(args)
    if error is not None:
        raise UsageError(error)
    try:
        images = list_images(args.data_dir)
    except FileNotFoundError as exc:
        raise UsageError(f"no calibration images: {exc}") from exc
    # PostTrainingQuantization works on legacy programs; the PIR flag is read at import.
    code = reexec_without_pir(__name__ if __name__ != "__main__" else "mobilenetv3_tipc.quantization.post_quant",
                              argv)
    if code is not None:
        return code
    summary = quantize(args, images)
    output_dir = Path(args.output_dir)
    cal: dict = summary["calibration"]  # type: ignore[assignment]
    logger.info("calibration summary: algo %s, %d of %d images in %d batches of %d, %d quantize_linear ops, %.1f s",
                summary["algo"], cal["images_used"], cal["images_found"], cal["batches"], cal["batch_size"],
                summary["quantize_linear_ops"], cal["seconds"])
    logger.info("model size: float %.2f MB -> int8 %.2f MB", layout.model_size(args.model_dir) / 1e6,
                layout.model_size(output_dir) / 1e6)
    logger.info("int8 model saved to %s (%s)", output_dir,
                ", ".join(sorted(p.name for p in output_dir.iterdir() if p.is_file())))
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    return run_main(run, argv)


if __name__ == "__main__":
    sys.exit(main())
