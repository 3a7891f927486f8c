"""Top-k selection and the result lines every predictor prints."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Prediction:
    class_ids: list[int]
    probs: list[float]
    labels: list[str] | None = None

    @property
    def class_id(self) -> int:
        return self.class_ids[0]

    @property
    def prob(self) -> float:
        return self.probs[0]


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def topk(probs: np.ndarray, k: int = 1, labels: list[str] | None = None) -> list[Prediction]:
    """Best ``k`` classes of each row of an ``(N, C)`` probability array, best first."""
    if probs.ndim != 2:
        raise ValueError(f"expected an (N, classes) array, got shape {probs.shape}")
    k = max(1, min(k, probs.shape[1]))
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    results = []
    for index, row in enumerate(probs):  # no zip(strict=...): this module runs on Python 3.9 too
        ids_list = [int(i) for i in order[index]]
        names = [labels[i] for i in ids_list] if labels else None
        results.append(Prediction(ids_list, [float(row[i]) for i in ids_list], names))
    return results


def format_topk(pred: Prediction) -> str:
    """``top-k: 8 hen (0.9091), 7 cock (0.0500), ...``"""
    parts = []
    for rank, cid in enumerate(pred.class_ids):
        prob = pred.probs[rank]
        name = f" {pred.labels[rank]}" if pred.labels else ""
        parts.append(f"{cid}{name} ({prob:.4f})")
    return "top-k: " + ", ".join(parts)
