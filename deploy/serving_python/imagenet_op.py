"""The ``imagenet`` Op: base64 image bytes in, top-1 label/prob/class_id strings out.

This is upstream's ``MobileNetV3Op`` (``preprocess`` / ``postprocess`` of a Paddle
Serving pipeline Op) on the project's shared preprocessing
(:func:`vision.preprocess.preprocess`) and post-processing
(:func:`vision.postprocess.topk`).
"""

from __future__ import annotations

import numpy as np

from deploy.serving_python.protocol import INPUT_PARAMS_ERROR, PipelineRequest, ProtocolError, format_list
from vision.postprocess import topk
from vision.preprocess import CROP_SIZE, MAX_PIXELS, RESIZE_SIZE, ImageDecodeError, preprocess

OUTPUT_KEYS = ["label", "prob", "class_id"]


class ImagenetOp:
    def __init__(self, labels: list[str] | None = None, resize_size: int = RESIZE_SIZE,
                 crop_size: int = CROP_SIZE, max_pixels: int = MAX_PIXELS) -> None:
        self.labels = labels
        self.resize_size = resize_size
        self.crop_size = crop_size
        self.max_pixels = max_pixels

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (3, self.crop_size, self.crop_size)

    def preprocess(self, request: PipelineRequest) -> np.ndarray:
        """Decode every image of the request into one ``(n, 3, crop, crop)`` float32 batch."""
        arrays = []
        for where, data in zip(request.names, request.images, strict=True):
            try:
                arrays.append(preprocess(data, resize_size=self.resize_size, crop_size=self.crop_size,
                                         max_pixels=self.max_pixels))
            except ImageDecodeError as exc:
                raise ProtocolError(INPUT_PARAMS_ERROR, f"{where}: {exc}") from exc
        return np.stack(arrays)

    def postprocess(self, probs: np.ndarray) -> tuple[list[str], list[str]]:
        """Top-1 of each row as upstream strings: ``"['tabby, tabby cat']"``, ``"[0.93]"``, ``"[281]"``."""
        preds = topk(probs, 1, self.labels)
        class_ids = [p.class_id for p in preds]
        label_names = [p.labels[0] if p.labels else str(p.class_id) for p in preds]
        values = [format_list(label_names), format_list([p.prob for p in preds]), format_list(class_ids)]
        return list(OUTPUT_KEYS), values
