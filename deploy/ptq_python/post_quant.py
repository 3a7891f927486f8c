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
``quantization.json`` (the marker ``deploy/inference_python`` looks for, with the
calibration summary). Run it with ``infer.py --precision int8 --enable-mkldnn True``.

Exit codes: 0 ok, 1 quantization failed, 2 bad arguments, missing model or no calibration images.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from deploy.inference_python.predictor import QUANT_MARKER  # noqa: E402
from deploy.options import EXIT_FAILED, EXIT_USAGE  # noqa: E402
from vision.preprocess import list_images, preprocess  # noqa: E402

logger = logging.getLogger("post_quant")

ALGOS = ("abs_max", "avg", "hist", "mse", "emd", "KL")
PROGRAM = "inference.pdmodel"
PARAMS = "inference.pdiparams"
COPIED = ("model_info.json", "label_list.txt")
QUANT_OP_TYPES = ("conv2d", "depthwise_conv2d", "mul", "matmul", "matmul_v2")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", "--model_dir", required=True,
                        help="float inference model in legacy format (inference.pdmodel + inference.pdiparams)")
    parser.add_argument("--data-dir", "--data_dir", required=True,
                        help="calibration images: a file, a folder, or a folder of class folders")
    parser.add_argument("--output-dir", "--output_dir", required=True, help="where the int8 model is written")
    parser.add_argument("--batch-size", "--batch_size", type=int, default=4, help="images per batch (default: 4)")
    parser.add_argument("--batch-num", "--batch_num", type=int, default=10,
                        help="calibration batches; fewer when the folder runs out (default: 10)")
    parser.add_argument("--algo", choices=ALGOS, default="abs_max",
                        help="activation threshold algorithm (default: abs_max, see the PTQ doc)")
    parser.add_argument("--hist-percent", "--hist_percent", type=float, default=0.999,
                        help="percentile for --algo hist (default: 0.999)")
    parser.add_argument("--use-gpu", "--use_gpu", default="False",
                        help="accepted for upstream compatibility; calibration runs on CPU")
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
        if (model_dir / "inference.json").is_file():
            hint = (" (it holds a PIR inference.json; PTQ needs the legacy program: "
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
    program, _, _ = paddle.static.load_inference_model(str(output_dir / "inference"), exe)
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
    info_path = model_dir / "model_info.json"
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
    if output_dir.exists():
        shutil.rmtree(output_dir)
    ptq.save_quantized_model(str(output_dir), model_filename=PROGRAM, params_filename=PARAMS)
    seconds = time.perf_counter() - start

    for name in COPIED:
        if (model_dir / name).is_file():
            shutil.copyfile(model_dir / name, output_dir / name)
    ops = count_quant_ops(output_dir)
    return {
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
        "quantize_linear_ops": ops.get("quantize_linear", 0),
        "dequantize_linear_ops": ops.get("dequantize_linear", 0),
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


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in (path / PROGRAM, path / PARAMS) if p.is_file())


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = get_args_parser().parse_args(argv)
    error = check_args(args)
    if error is None:
        try:
            images = list_images(args.data_dir)
        except FileNotFoundError as exc:
            error = f"no calibration images: {exc}"
    if error is not None:
        logger.error("%s", error)
        return EXIT_USAGE
    if os.environ.get("FLAGS_enable_pir_api") != "0":  # noqa: SIM112 (Paddle flag name)
        # PostTrainingQuantization works on legacy programs; the flag is read at import.
        env = dict(os.environ, FLAGS_enable_pir_api="0")
        return subprocess.call([sys.executable, str(Path(__file__).resolve()), *argv], env=env)

    try:
        summary = quantize(args, images)
    except (RuntimeError, ValueError, OSError) as exc:
        logger.error("quantization failed: %s", exc)
        return EXIT_FAILED
    output_dir = Path(args.output_dir)
    (output_dir / QUANT_MARKER).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    cal: dict = summary["calibration"]  # type: ignore[assignment]
    logger.info("calibration summary: algo %s, %d of %d images in %d batches of %d, %d quantize_linear ops, %.1f s",
                summary["algo"], cal["images_used"], cal["images_found"], cal["batches"], cal["batch_size"],
                summary["quantize_linear_ops"], cal["seconds"])
    logger.info("model size: float %.2f MB -> int8 %.2f MB", dir_size(Path(args.model_dir)) / 1e6,
                dir_size(output_dir) / 1e6)
    logger.info("int8 model saved to %s (%s)", output_dir,
                ", ".join(sorted(p.name for p in output_dir.iterdir() if p.is_file())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
