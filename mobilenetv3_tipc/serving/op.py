"""The ``imagenet`` Op: base64 image bytes in, top-1 label/prob/class_id strings out.

Upstream's ``MobileNetV3Op`` (``preprocess`` / ``postprocess`` of a Paddle Serving
pipeline Op) on the project's one preprocessing (:mod:`mobilenetv3_tipc.data.preprocess`)
and post-processing (:func:`mobilenetv3_tipc.data.postprocess.topk`).

A request's images share a budget of decoded pixels (``op.imagenet.max_request_pixels``):
each image is checked from its header, before it is decoded, against what the images
before it left, so one request costs at most that many decoded pixels however its
images are sized. Images within the budget are decoded exactly as every other path
decodes them (no draft decoding), so the served tensors are the tested ones.
"""

from __future__ import annotations

import threading

import numpy as np
from PIL import Image

from mobilenetv3_tipc.data.postprocess import topk
from mobilenetv3_tipc.data.preprocess import (
    CROP_SIZE,
    MAX_PIXELS,
    RESIZE_SIZE,
    ImageDecodeError,
    decode_image,
    preprocess,
)
from mobilenetv3_tipc.serving.protocol import INPUT_PARAMS_ERROR, PipelineRequest, ProtocolError, format_list

OUTPUT_KEYS = ["label", "prob", "class_id"]


class Cancelled(Exception):
    """The request was abandoned (client gone, timeout, shutdown) while its images were being prepared."""


class ImagenetOp:
    def __init__(self, labels: list[str] | None = None, resize_size: int = RESIZE_SIZE,
                 crop_size: int = CROP_SIZE, max_request_pixels: int = MAX_PIXELS) -> None:
        self.labels = labels
        self.resize_size = resize_size
        self.crop_size = crop_size
        self.max_request_pixels = max_request_pixels

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (3, self.crop_size, self.crop_size)

    def preprocess(self, request: PipelineRequest, cancelled: threading.Event | None = None) -> np.ndarray:
        """Decode every image of the request into one ``(n, 3, crop, crop)`` float32 batch.

        Raises :class:`Cancelled` as soon as ``cancelled`` is set (checked before each image).
        """
        batch = np.empty((len(request.images), *self.input_shape), np.float32)
        budget = self.max_request_pixels
        for index, (where, data) in enumerate(zip(request.names, request.images, strict=True)):
            if cancelled is not None and cancelled.is_set():
                raise Cancelled
            limit = min(MAX_PIXELS, budget)
            try:
                img = decode_image(data, max_pixels=limit)
            except ImageDecodeError as exc:
                raise ProtocolError(INPUT_PARAMS_ERROR, self._decode_message(where, exc, limit)) from exc
            except Exception as exc:  # noqa: BLE001 - any decoder failure is bad input (Pillow plugins raise anything)
                raise ProtocolError(INPUT_PARAMS_ERROR, f"{where}: <{len(data)} bytes>: not a decodable image "
                                                        f"({type(exc).__name__})") from exc
            budget -= img.width * img.height
            preprocess(img, self.resize_size, self.crop_size, out=batch[index])
        return batch

    def _decode_message(self, where: str, exc: ImageDecodeError, limit: int) -> str:
        if isinstance(exc.__cause__, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
            # Pillow's own check (its limit, not ours) fired before decode_image's
            return f"{where}: the image declares more pixels than the limit of {MAX_PIXELS:,} (decompression bomb)"
        if limit < MAX_PIXELS and exc.__cause__ is None:  # decode_image's own size check, from the header
            return (f"{where}: {exc}: the request's images together may have at most "
                    f"op.imagenet.max_request_pixels = {self.max_request_pixels:,} decoded pixels")
        return f"{where}: {exc}"

    def postprocess(self, probs: np.ndarray) -> tuple[list[str], list[str]]:
        """Top-1 of each row as upstream strings: ``"['tabby, tabby cat']"``, ``"[0.93]"``, ``"[281]"``."""
        preds = topk(probs, 1, self.labels)
        class_ids = [p.class_id for p in preds]
        label_names = [p.labels[0] if p.labels else str(p.class_id) for p in preds]
        values = [format_list(label_names), format_list([p.prob for p in preds]), format_list(class_ids)]
        return list(OUTPUT_KEYS), values
