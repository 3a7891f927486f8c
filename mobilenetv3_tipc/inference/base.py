"""The one interface of every predictor: ``run(batch) -> (N, classes)``, ``describe()``, the engine line."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod

import numpy as np

from mobilenetv3_tipc.inference.engine import format_engine_line

logger = logging.getLogger(__name__)


class Predictor(ABC):
    """A loaded model. ``engine`` names what runs it (``openvino``, ``onednn``, ``onnxruntime``, ...)."""

    engine: str

    @abstractmethod
    def _run(self, batch: np.ndarray) -> np.ndarray:
        """Run a C-contiguous float32 ``(N, 3, H, W)`` batch."""

    @abstractmethod
    def engine_settings(self) -> str:
        """``key=value, ...`` for the engine line."""

    @abstractmethod
    def describe(self) -> dict[str, object]:
        """The ``Conf info`` section of the timing report."""

    def run(self, batch: np.ndarray) -> np.ndarray:
        # A no-op for a C-contiguous float32 batch (the usual case).
        if batch.dtype != np.float32 or not batch.flags.c_contiguous:
            batch = np.ascontiguousarray(batch, dtype=np.float32)
        return self._run(batch)

    def engine_line(self) -> str:
        """``inference engine: <name> (<settings>)``, printed once by every inference run."""
        return format_engine_line(self.engine, self.engine_settings())
