"""The inference paths under test, each as ``run(batch) -> probabilities``, built from one export.

:func:`prepare_model` saves random weights, exports them with ``tools/export_model.py``
(``inference.json`` plus the legacy ``inference.pdmodel`` for the OpenVINO engine) and
converts the export to ONNX with paddle2onnx, as ``test_tipc/test_paddle2onnx.sh`` does.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mobilenetv3_tipc.data.batching import BatchPreprocessor
from mobilenetv3_tipc.data.postprocess import topk
from mobilenetv3_tipc.data.preprocess import decode_image, normalize_chw, preprocess, resize_center_crop
from mobilenetv3_tipc.export import layout
from mobilenetv3_tipc.inference.paddle_predictor import CPU_VARIANTS

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
Runner = Callable[[np.ndarray], np.ndarray]
# One path per Paddle Inference variant ("default" = infer.py without engine flags).
PATHS = ("dygraph", *(f"paddle-{v}" for v in CPU_VARIANTS), "onnxruntime", "onnxruntime-raw")
ONNX_OPSET = 13


class PathUnavailable(RuntimeError):
    """This machine or installation cannot run the path (the message says why)."""


@dataclass(frozen=True)
class ModelFiles:
    name: str
    weights: Path
    infer_dir: Path
    onnx_file: Path


def prepare_model(name: str, work: Path) -> ModelFiles:
    """Random weights, their Paddle inference export and its ONNX conversion, under ``work``."""
    import paddle

    from mobilenetv3_tipc.model import build_model

    files = ModelFiles(name, work / "weights.pdparams", work / "infer", work / "model.onnx")
    work.mkdir(parents=True, exist_ok=True)
    paddle.seed(0)
    paddle.save(realistic_random_model(build_model(name, num_classes=1000)).state_dict(), str(files.weights))
    export = [sys.executable, str(ROOT / "tools/export_model.py"), "--model", name, "--pretrained",
              str(files.weights), "--save-inference-dir", str(files.infer_dir)]
    done = subprocess.run(export, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"tools/export_model.py failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    import paddle2onnx

    paddle2onnx.export(str(files.infer_dir / layout.PIR_PROGRAM), str(files.infer_dir / layout.PARAMS),
                       str(files.onnx_file), opset_version=ONNX_OPSET, auto_upgrade_opset=False,
                       enable_onnx_checker=True)
    if not files.onnx_file.is_file():
        raise RuntimeError(f"paddle2onnx wrote no {files.onnx_file}")
    return files


def realistic_random_model(net: object, logit_std: float = 3.0) -> object:
    """Random weights with trained-like activations: BatchNorm statistics of one random batch, and a
    classifier scaled to logits of std ``logit_std``.

    Freshly initialised, the network's logits are ~1e-10 (every softmax output 1/1000, so an agreement
    check would compare constants) and its tiny activations are not what a trained model computes.
    """
    import paddle

    rng = np.random.default_rng(0)
    batch = paddle.to_tensor(rng.standard_normal((8, 3, 224, 224), dtype=np.float32))
    for layer in net.sublayers():
        if isinstance(layer, paddle.nn.BatchNorm2D):
            layer._momentum = 0.0  # running statistics := this batch's statistics
    net.train()
    with paddle.no_grad():
        net(batch)
        net.eval()
        head = [layer for layer in net.sublayers() if isinstance(layer, paddle.nn.Linear)][-1]
        factor = logit_std / (float(net(batch).numpy().std()) + 1e-12)
        head.weight.set_value(head.weight * factor)
        head.bias.set_value(head.bias * factor)
    return net


def _dygraph(files: ModelFiles, threads: int) -> Runner:
    import paddle
    from paddle.base import core

    from mobilenetv3_tipc.model.checkpoint import model_from_checkpoint

    core.set_num_threads(threads)
    net = model_from_checkpoint(files.name, files.weights, num_classes=1000)

    def run(batch: np.ndarray) -> np.ndarray:
        with paddle.no_grad():
            return paddle.nn.functional.softmax(net(paddle.to_tensor(batch))).numpy()

    return run


def _paddle(files: ModelFiles, variant: str, threads: int) -> tuple[Runner, str]:
    from mobilenetv3_tipc.cli import UnsupportedConfig
    from mobilenetv3_tipc.inference.paddle_predictor import create_cpu_predictor

    try:
        predictor = create_cpu_predictor(files.infer_dir, variant, cpu_threads=threads)
    except UnsupportedConfig as exc:
        raise PathUnavailable(str(exc)) from exc
    return predictor.run, predictor.engine_line()


def _onnx_raw(files: ModelFiles, threads: int) -> Runner:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(files.onnx_file), sess_options=options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    def run(batch: np.ndarray) -> np.ndarray:
        return session.run(None, {input_name: batch})[0]

    return run


def build_path(path: str, files: ModelFiles, threads: int) -> tuple[Runner, str]:
    """``(run, engine)`` for one of :data:`PATHS` at ``threads`` CPU threads.

    ``engine`` is the predictor's ``inference engine: <name> (<settings>)`` line where there is one.
    """
    if path == "dygraph":
        return _dygraph(files, threads), "paddle eager"
    if path.startswith("paddle-"):
        return _paddle(files, path.removeprefix("paddle-"), threads)
    if path == "onnxruntime":
        from mobilenetv3_tipc.inference.onnx_predictor import OnnxPredictor

        predictor = OnnxPredictor(files.onnx_file, threads=threads)
        return predictor.run, predictor.engine_line()
    if path == "onnxruntime-raw":
        return _onnx_raw(files, threads), "onnxruntime.InferenceSession"
    raise ValueError(f"unknown path {path!r}; expected one of {', '.join(PATHS)}")


def end_to_end(run: Runner | None, jpeg: bytes, batch: int, preprocessor: BatchPreprocessor,
               batches: int) -> Callable[[], object]:
    """One call = ``batches`` batches of ``batch`` JPEGs -> top-5, as ``inference/batch_classifier.py`` does it.

    ``preprocessor`` (mobilenetv3_tipc/data/batching.py) decodes on its worker threads and prepares the next
    batch while ``run`` infers the current one. ``run=None`` only preprocesses (no model).
    """
    stream = [[jpeg] * batch] * batches

    def call() -> object:
        if run is None:
            return [pending.result() for _, pending in preprocessor.iter_batches(stream)]
        return [topk(run(pending.result()), 5) for _, pending in preprocessor.iter_batches(stream)]

    return call


def single_image(run: Runner, jpeg: bytes) -> Callable[[], object]:
    """One call = one JPEG -> top-5, nothing overlapped: the latency a lone request sees."""

    def call() -> object:
        return topk(run(preprocess(jpeg)[None]), 5)

    return call


def preprocess_stages(jpeg: bytes) -> dict[str, Callable[[], object]]:
    """One call per stage of mobilenetv3_tipc/data/preprocess.py's :func:`preprocess` on one image (one thread)."""
    decoded = decode_image(jpeg)
    cropped = resize_center_crop(decoded)
    return {
        "decode": lambda: decode_image(jpeg),
        "resize_crop": lambda: resize_center_crop(decoded),
        "normalize": lambda: normalize_chw(cropped),
    }
