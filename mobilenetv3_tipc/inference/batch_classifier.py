"""Batched classification of image files, shared by the Paddle Inference and ONNX Runtime CLIs.

Preprocessing runs on a few threads (:class:`mobilenetv3_tipc.data.batching.BatchPreprocessor`) and
overlaps inference: batch ``i + 1`` is decoded while batch ``i`` runs, so the
``preprocess`` stage times only what the loop waits for its next batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mobilenetv3_tipc.data.batching import BatchPreprocessor
from mobilenetv3_tipc.data.labels import labels_for
from mobilenetv3_tipc.data.postprocess import Prediction, topk
from mobilenetv3_tipc.data.preprocess import ImageDecodeError
from mobilenetv3_tipc.inference.timing_report import StageTimer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageResult:
    path: Path
    prediction: Prediction


def classify_images(
    images: list[Path],
    run_batch: Callable[[np.ndarray], np.ndarray],
    timer: StageTimer,
    *,
    batch_size: int,
    resize_size: int,
    crop_size: int,
    k: int = 1,
    label_dir: Path | None = None,
    workers: int = 0,
) -> tuple[list[ImageResult], bool]:
    """Preprocess, run and post-process ``images`` in batches, timing each stage.

    ``timer.warmup`` extra runs of the first batch come first and are neither timed nor
    reported, so every image appears once in the results. An image that cannot be decoded
    is logged and its batch skipped; the second return value says whether that happened.
    ``workers`` preprocessing threads (0 = one per core, at most four).
    """
    batches = [images[i:i + batch_size] for i in range(0, len(images), batch_size)]
    schedule = [batches[0]] * timer.warmup + batches
    labels: list[str] | None = None
    results: list[ImageResult] = []
    failed = False
    with BatchPreprocessor(workers, resize_size=resize_size, crop_size=crop_size) as preprocessor:
        for index, (batch_paths, pending) in enumerate(preprocessor.iter_batches(schedule)):
            try:
                with timer.stage("preprocess"):
                    batch = pending.result()
            except ImageDecodeError as exc:
                logger.error("%s", exc)
                failed = True
                timer.end_batch(0)
                continue
            with timer.stage("inference"):
                probs = run_batch(batch)
            with timer.stage("postprocess"):
                if labels is None:
                    labels = labels_for(probs.shape[1], label_dir)
                preds = topk(probs, max(1, k), labels)
            timer.end_batch(len(batch_paths))
            if index >= timer.warmup:
                results.extend(ImageResult(p, pred) for p, pred in zip(batch_paths, preds, strict=True))
    return results, failed
