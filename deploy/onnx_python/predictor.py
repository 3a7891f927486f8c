"""An ONNX Runtime predictor with the same ``run(batch) -> probs`` interface as PaddlePredictor."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from deploy.options import UnsupportedConfig, available_cpus

logger = logging.getLogger(__name__)


class OnnxPredictor:
    def __init__(self, onnx_file: str | Path, threads: int = 0, use_gpu: bool = False) -> None:
        import onnxruntime as ort

        path = Path(onnx_file)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: ONNX model not found (convert one with paddle2onnx)")
        providers = ["CPUExecutionProvider"]
        if use_gpu:
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise UnsupportedConfig("this onnxruntime build has no CUDA execution provider")
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads if threads > 0 else available_cpus()
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self.threads = options.intra_op_num_threads
        logger.info("loaded %s (input %s, output %s)", path, self.input_name, self.output_name)

    def run(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        return self.session.run([self.output_name], {self.input_name: batch})[0]
