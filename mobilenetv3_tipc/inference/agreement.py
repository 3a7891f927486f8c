"""Cross-backend agreement: do several backends give the reference's answers on the same images?

The reference is the dygraph model built from the user's own ``.pdparams``
(:class:`DygraphReference`), so the gate checks *their* trained weights, not
a golden file that only fits one checkpoint. Every other backend (Paddle
Inference, ONNX Runtime, a serving client, a quantized model, ...) is anything
with ``run(batch) -> (N, classes) probabilities``.

A backend agrees when, on every image,

* its top-1 class equals the reference's top-1 (a different top-1 is tolerated
  only when the reference itself scores the two classes within the tolerance,
  i.e. a tie at the stated precision; such images are counted as ``ties``), and
* ``max |p_backend - p_reference| <= tolerance`` over all images and classes
  (fp32 default ``1e-4``; a quantized chain passes its own, looser value).

Reuse from another chain::

    from mobilenetv3_tipc.inference.agreement import DygraphReference, compare_backends, format_table, verdict
    reference = DygraphReference("mobilenet_v3_small", "weights.pdparams")
    ref, results = compare_backends(reference, {"paddle_serving": client}, batches, names, tolerance=1e-4)
    print(format_table(results, tolerance=1e-4))
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

logger = logging.getLogger(__name__)

DEFAULT_TOLERANCE = 1e-4
REFERENCE_NAME = "dygraph"
# How many disagreeing images are described per backend.
MAX_DETAILS = 5


class Backend(Protocol):
    def run(self, batch: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class Mismatch:
    image: str
    reference_top1: int
    reference_prob: float
    backend_top1: int
    backend_prob: float
    max_abs_diff: float


@dataclass
class BackendResult:
    name: str
    images: int = 0
    top1_agree: int = 0
    ties: int = 0
    max_abs_diff: float = math.nan
    error: str | None = None
    mismatches: list[Mismatch] = field(default_factory=list)
    tolerance: float = DEFAULT_TOLERANCE
    is_reference: bool = False

    @property
    def passed(self) -> bool:
        if self.is_reference:
            return self.error is None
        return (
            self.error is None
            and self.images > 0
            and self.top1_agree == self.images
            and bool(self.max_abs_diff <= self.tolerance)  # False for NaN
        )

    def reasons(self) -> list[str]:
        if self.error is not None:
            return [self.error]
        out = []
        if self.top1_agree != self.images:
            out.append(f"top-1 differs on {self.images - self.top1_agree}/{self.images} images")
        if not bool(self.max_abs_diff <= self.tolerance):
            out.append(f"max |Δp| {self.max_abs_diff:.2e} > {self.tolerance:.0e}")
        return out


def compare(name: str, reference: np.ndarray, probs: np.ndarray, image_names: Sequence[str],
            tolerance: float = DEFAULT_TOLERANCE) -> BackendResult:
    """Compare one backend's ``(N, C)`` probabilities with the reference's."""
    result = BackendResult(name=name, images=len(reference), tolerance=tolerance)
    if probs.shape != reference.shape:
        result.error = f"output shape {list(probs.shape)} differs from the reference's {list(reference.shape)}"
        return result
    diff = np.abs(probs.astype(np.float64) - reference.astype(np.float64))
    result.max_abs_diff = float(diff.max()) if diff.size else 0.0
    if not np.all(np.isfinite(probs)):
        result.max_abs_diff = math.nan
    ref_top = reference.argmax(axis=1)
    got_top = probs.argmax(axis=1)
    for i, (r, g) in enumerate(zip(ref_top, got_top, strict=True)):
        if r == g:
            result.top1_agree += 1
            continue
        if reference[i, r] - reference[i, g] <= tolerance:
            result.top1_agree += 1
            result.ties += 1
            continue
        if len(result.mismatches) < MAX_DETAILS:
            result.mismatches.append(Mismatch(
                image=str(image_names[i]), reference_top1=int(r), reference_prob=float(reference[i, r]),
                backend_top1=int(g), backend_prob=float(probs[i, g]), max_abs_diff=float(diff[i].max()),
            ))
    return result


def run_batches(backend: Backend, batches: Sequence[np.ndarray]) -> np.ndarray:
    """Concatenate ``backend.run`` over ``batches``."""
    return np.concatenate([np.asarray(backend.run(batch), dtype=np.float32) for batch in batches], axis=0)


# Errors a backend may raise while running: report them as a failed row instead of crashing.
BACKEND_ERRORS: tuple[type[BaseException], ...] = (RuntimeError, ValueError, OSError, MemoryError)


def compare_backends(
    reference: Backend,
    backends: Mapping[str, Backend],
    batches: Sequence[np.ndarray],
    image_names: Sequence[str],
    tolerance: float = DEFAULT_TOLERANCE,
    reference_name: str = REFERENCE_NAME,
) -> tuple[np.ndarray, list[BackendResult]]:
    """Run the reference and every backend on ``batches``; one result per backend (reference first)."""
    ref = run_batches(reference, batches)
    if ref.shape[0] != len(image_names):
        raise ValueError(f"{len(image_names)} image names for {ref.shape[0]} reference outputs")
    results = [BackendResult(name=reference_name, images=len(ref), top1_agree=len(ref), max_abs_diff=0.0,
                             tolerance=tolerance, is_reference=True)]
    for name, backend in backends.items():
        try:
            probs = run_batches(backend, batches)
        except BACKEND_ERRORS as exc:
            logger.error("%s failed to run: %s", name, exc)
            results.append(BackendResult(name=name, images=len(ref), tolerance=tolerance,
                                         error=f"could not run: {exc}"))
            continue
        results.append(compare(name, ref, probs, image_names, tolerance))
    return ref, results


def all_agree(results: Sequence[BackendResult]) -> bool:
    return all(r.passed for r in results) and any(not r.is_reference for r in results)


def format_table(results: Sequence[BackendResult], tolerance: float = DEFAULT_TOLERANCE) -> str:
    """A plain-column table: backend, top-1 agreement, max |Δp|, result."""
    header = ("backend", "top-1", "max |Δp|", "result")
    rows = []
    for r in results:
        if r.is_reference:
            rows.append((f"{r.name} (reference)", f"{r.images}/{r.images}", "0", "reference"))
            continue
        top1 = "-" if r.error else f"{r.top1_agree}/{r.images}" + (f" ({r.ties} ties)" if r.ties else "")
        diff = "-" if r.error else f"{r.max_abs_diff:.2e}"
        rows.append((r.name, top1, diff, "ok" if r.passed else "FAIL"))
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    lines = [f"tolerance: max |Δp| <= {tolerance:.0e} and the same top-1 (fp32 default {DEFAULT_TOLERANCE:.0e})"]
    for row in (header, *rows):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def verdict(results: Sequence[BackendResult]) -> str:
    """One summary line, then the reasons and the first disagreeing images of each failing backend."""
    compared = [r for r in results if not r.is_reference]
    if all_agree(results):
        return f"AGREE: {', '.join(r.name for r in compared)} match the {results[0].name} reference"
    if not compared:
        return "DISAGREE: no backend to compare with the reference"
    lines = []
    failing = [r for r in compared if not r.passed]
    lines.append("DISAGREE: " + "; ".join(f"{r.name}: {', '.join(r.reasons())}" for r in failing))
    for r in failing:
        for m in r.mismatches:
            lines.append(
                f"  {r.name}: {m.image}: reference top-1 {m.reference_top1} (p={m.reference_prob:.6f}), "
                f"{r.name} top-1 {m.backend_top1} (p={m.backend_prob:.6f}), max |Δp| {m.max_abs_diff:.2e}"
            )
    return "\n".join(lines)


def reference_strength(reference: np.ndarray) -> float:
    """Mean top-1 probability of the reference; near ``1/classes`` means near-uniform outputs."""
    return float(reference.max(axis=1).mean()) if reference.size else 0.0


class DygraphReference:
    """The dygraph model from ``.pdparams`` weights, in eval mode, with a softmax: the reference backend."""

    def __init__(self, model_name: str, weights: str | Path, num_classes: int | None = None,
                 scale: float = 1.0) -> None:
        import paddle

        from mobilenetv3_tipc.model.checkpoint import model_from_checkpoint

        paddle.set_device("cpu")
        self.weights = Path(weights)
        self.model = model_from_checkpoint(model_name, self.weights, num_classes=num_classes, scale=scale)
        self.num_classes = self.model.num_classes
        self._paddle = paddle

    def run(self, batch: np.ndarray) -> np.ndarray:
        paddle = self._paddle
        with paddle.no_grad():
            logits = self.model(paddle.to_tensor(np.ascontiguousarray(batch, dtype=np.float32)))
            return paddle.nn.functional.softmax(logits, axis=-1).numpy()
