"""Inference backends for the service: Paddle Inference (default) and ONNX Runtime.

Both are thin adapters over the project's predictors
(:class:`mobilenetv3_tipc.inference.paddle_predictor.PaddlePredictor` and
:class:`mobilenetv3_tipc.inference.onnx_predictor.OnnxPredictor`), so the service runs exactly
what ``infer.py`` and the ONNX chain run. ``model_config`` points at:

* ``backend: paddle``: the exported inference directory (``inference.json`` +
  ``inference.pdiparams``, from ``tools/export_model.py``). Upstream pointed at a
  ``serving_server/`` directory produced by ``paddle_serving_client.convert``;
  that conversion step does not exist here, the export directory is used as is.
* ``backend: onnxruntime``: an ``.onnx`` file, or a directory holding exactly one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np

from mobilenetv3_tipc.cli import UnsupportedConfig
from mobilenetv3_tipc.serving.config import ConfigError, LocalServiceConf

logger = logging.getLogger(__name__)


class Backend(Protocol):
    def run(self, batch: np.ndarray) -> np.ndarray: ...


BackendFactory = Callable[[int], Backend]


def resolve_model_path(model: LocalServiceConf) -> Path:
    """Check ``model_config`` exists in the form the backend needs; returns the file/dir to load."""
    path = model.model_dir
    key = "op.imagenet.local_service_conf.model_config"
    if model.backend == "paddle":
        from mobilenetv3_tipc.export.layout import find_model_files

        if path.is_file() and path.suffix == ".onnx":
            raise ConfigError(f"{key} {str(path)!r} is an ONNX file; set backend: onnxruntime to serve it")
        try:
            find_model_files(path)
        except FileNotFoundError as exc:
            raise ConfigError(f"{key}: {exc}") from None
        return path
    if path.is_dir():
        candidates = sorted(path.glob("*.onnx"))
        if len(candidates) != 1:
            found = ", ".join(p.name for p in candidates) or "none"
            raise ConfigError(f"{key} {str(path)!r}: the onnxruntime backend needs an .onnx file or a directory "
                              f"holding exactly one (found {found})")
        return candidates[0]
    if not path.is_file():
        raise ConfigError(f"{key} {str(path)!r}: ONNX model file not found (convert one with paddle2onnx)")
    return path


def label_dir(model: LocalServiceConf) -> Path:
    """Where ``label_list.txt`` is looked for: the model directory (the .onnx file's directory)."""
    path = model.model_dir
    return path if path.is_dir() else path.parent


def make_backend_factory(model: LocalServiceConf) -> BackendFactory:
    """``factory(worker_index)`` builds one predictor; workers are bound to GPUs round-robin as upstream."""
    path = resolve_model_path(model)
    device = model.device

    def gpu_for(worker: int) -> int:
        return device.gpu_ids[worker % len(device.gpu_ids)] if device.gpu_ids else 0

    if model.backend == "onnxruntime":
        from mobilenetv3_tipc.inference.onnx_predictor import OnnxPredictor

        if device.kind == "tensorrt":
            def unsupported(worker: int) -> Backend:
                raise UnsupportedConfig("device_type 2 (TensorRT) is served by the paddle backend only")
            return unsupported

        def onnx_factory(worker: int) -> Backend:
            # OnnxPredictor picks the CUDA provider's default card; bind it with CUDA_VISIBLE_DEVICES.
            return OnnxPredictor(path, threads=model.thread_num, use_gpu=device.kind != "cpu")
        return onnx_factory

    from mobilenetv3_tipc.inference.paddle_predictor import InferenceOptions, PaddlePredictor

    precision = model.precision
    if precision == "bf16":
        if device.kind != "cpu":
            def no_bf16(worker: int) -> Backend:
                raise UnsupportedConfig("precision bf16 is a CPU (oneDNN) mode; use fp16 on GPU/TensorRT")
            return no_bf16
        precision = "fp16"  # PaddlePredictor runs CPU "fp16" as oneDNN bfloat16

    # use_mkldnn as upstream (true: oneDNN, false: off) when the config gives it; absent: the
    # engine is chosen as infer.py's auto (OpenVINO for a float model with its legacy program).
    enable_mkldnn = model.use_mkldnn if "use_mkldnn" in model.model_fields_set else None

    def paddle_factory(worker: int) -> Backend:
        options = InferenceOptions(
            use_gpu=device.kind != "cpu", gpu_id=gpu_for(worker), enable_mkldnn=enable_mkldnn,
            use_openvino=model.use_openvino, cpu_threads=model.thread_num, use_tensorrt=device.kind == "tensorrt",
            precision=precision, ir_optim=model.ir_optim,
        )
        return PaddlePredictor(path, options)
    return paddle_factory
