"""An ONNX Runtime predictor with the same ``run(batch) -> probs`` interface as PaddlePredictor.

The ONNX file comes from ``paddle2onnx`` applied to an exported model
(``tools/export_model.py``), so its output is already softmax probabilities.
CPU is the default; ``use_gpu=True`` uses the TensorRT and/or CUDA execution
providers when the installed onnxruntime has them, and raises
:class:`mobilenetv3_tipc.cli.UnsupportedConfig` (exit code 77 in the CLIs) otherwise.
Measured: the wrapper runs at raw ``InferenceSession`` speed.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from mobilenetv3_tipc.cli import UnsupportedConfig
from mobilenetv3_tipc.hardware import available_cpus
from mobilenetv3_tipc.inference.base import Predictor

logger = logging.getLogger(__name__)

CPU_PROVIDER = "CPUExecutionProvider"
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


class OnnxModelError(RuntimeError):
    """The file exists but onnxruntime cannot load or run it (corrupt, not ONNX, wrong input)."""


def _ort_errors() -> tuple[type[BaseException], ...]:
    """onnxruntime's own exception classes (they derive from ``Exception`` directly)."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    names = ("Fail", "InvalidArgument", "NoSuchFile", "NoModel", "EngineError", "RuntimeException",
             "InvalidProtobuf", "ModelLoaded", "NotImplemented", "InvalidGraph", "EPFail", "NotFound")
    return tuple(getattr(state, name) for name in names if hasattr(state, name)) + (RuntimeError,)


def select_providers(use_gpu: bool, available: list[str] | None = None) -> list[str]:
    """Execution providers for a session: GPU ones (best first) then CPU, or CPU alone."""
    if available is None:
        import onnxruntime as ort

        available = ort.get_available_providers()
    if not use_gpu:
        return [CPU_PROVIDER]
    gpu = [name for name in GPU_PROVIDERS if name in available]
    if not gpu:
        raise UnsupportedConfig(
            "GPU inference needs onnxruntime-gpu (TensorRT or CUDA execution provider); "
            f"this onnxruntime has only {', '.join(available) or 'no providers'}"
        )
    return [*gpu, CPU_PROVIDER]


class OnnxPredictor(Predictor):
    """``run(batch)`` maps an ``(N, 3, H, W)`` float32 array to the model's ``(N, classes)`` output."""

    engine = "onnxruntime"

    def __init__(self, onnx_file: str | Path, threads: int = 0, use_gpu: bool = False) -> None:
        import onnxruntime as ort

        path = Path(onnx_file)
        providers = select_providers(use_gpu)  # first: a machine that cannot run it skips (77)
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: ONNX model not found (convert an exported model with paddle2onnx, "
                "see test_tipc/docs/test_paddle2onnx.md)"
            )
        self.onnx_file = path
        self.use_gpu = use_gpu
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads if threads > 0 else available_cpus()
        options.inter_op_num_threads = 1
        # onnxruntime's defaults otherwise: all graph optimisations, sequential execution,
        # spinning intra-op threads.
        options.log_severity_level = 3  # errors only; warnings about unused initializers are noise
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        except _ort_errors() as exc:
            raise OnnxModelError(f"{path}: onnxruntime cannot load this model ({exc})") from exc
        self.providers = self.session.get_providers()
        if use_gpu and not any(name in self.providers for name in GPU_PROVIDERS):
            raise UnsupportedConfig(f"onnxruntime could not start a GPU provider (got {self.providers})")
        inputs = self.session.get_inputs()
        self.input_name = inputs[0].name
        self.input_shape = list(inputs[0].shape)
        self.output_name = self.session.get_outputs()[0].name
        self._output_names = [self.output_name]
        self.threads = options.intra_op_num_threads
        logger.info("loaded %s (input %s %s, output %s, providers %s)",
                    path, self.input_name, self.input_shape, self.output_name, ", ".join(self.providers))

    def _run(self, batch: np.ndarray) -> np.ndarray:
        try:
            return self.session.run(self._output_names, {self.input_name: batch})[0]
        except _ort_errors() as exc:
            raise OnnxModelError(f"{self.onnx_file}: inference on a {list(batch.shape)} batch failed ({exc})") from exc

    def engine_settings(self) -> str:
        device = "gpu" if self.use_gpu else "cpu"
        return f"device={device}, providers={'+'.join(self.providers)}, threads={self.threads}"

    def describe(self) -> dict[str, object]:
        return {
            "runtime_device": "gpu" if self.use_gpu else "cpu",
            "execution_providers": ", ".join(self.providers),
            "intra_op_num_threads": self.threads,
            "input_shape": self.input_shape,
        }
