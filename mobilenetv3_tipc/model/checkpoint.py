"""The one way to build a dygraph MobileNetV3 from a ``.pdparams`` checkpoint.

The checkpoint is read once (:func:`read_checkpoint`); the number of classes comes from it
unless given, and a quant-aware checkpoint (``train.py --pact_quant/--quant``) gets its
fake-quant layers before its weights are loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from paddle import nn

from mobilenetv3_tipc.model.mobilenetv3 import build_model
from mobilenetv3_tipc.model.weights import is_quant_aware_state, load_state, num_classes_of, read_state_dict

DEFAULT_NUM_CLASSES = 1000
QUANT_MODES = ("pact", "qat")


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    state: dict[str, object]

    @property
    def num_classes(self) -> int | None:
        return num_classes_of(self.state)

    @property
    def quant_aware(self) -> bool:
        return is_quant_aware_state(self.state)


def read_checkpoint(path: str | Path) -> Checkpoint:
    return Checkpoint(Path(path), read_state_dict(path))


def resolve_num_classes(checkpoint: Checkpoint | None, num_classes: int | None,
                        fallback: int = DEFAULT_NUM_CLASSES) -> int:
    """``num_classes`` if given (it must match the checkpoint's), else the checkpoint's, else ``fallback``."""
    found = checkpoint.num_classes if checkpoint is not None else None
    if num_classes is not None and found is not None and found != num_classes:
        raise ValueError(f"--num-classes {num_classes} but {checkpoint.path} has {found} classes")
    return num_classes or found or fallback


def build_from_checkpoint(
    model_name: str,
    checkpoint: Checkpoint | None,
    *,
    num_classes: int | None = None,
    scale: float = 1.0,
    quant_mode: str | None = None,
) -> tuple[nn.Layer, object | None]:
    """``(model, quanter)`` with ``checkpoint``'s weights; ``quanter`` is set for quant-aware models.

    ``quant_mode`` (``"pact"`` or ``"qat"``) inserts fake-quant layers: float weights are loaded
    before that (the usual QAT start), a quant-aware checkpoint after it. A quant-aware
    checkpoint without ``quant_mode`` is an error (it does not fit a float model).
    """
    if quant_mode not in (None, *QUANT_MODES):
        raise ValueError(f"quant_mode must be one of {', '.join(QUANT_MODES)} or None, got {quant_mode!r}")
    qat_checkpoint = checkpoint is not None and checkpoint.quant_aware
    if qat_checkpoint and quant_mode is None:
        raise ValueError(f"{checkpoint.path} was saved by quant-aware training; add --pact_quant or --quant")
    model = build_model(model_name, num_classes=resolve_num_classes(checkpoint, num_classes), scale=scale)
    if checkpoint is not None and not qat_checkpoint:
        load_state(model, checkpoint.state, checkpoint.path)
    quanter = None
    if quant_mode is not None:
        from mobilenetv3_tipc.training.quant_aware import build_quant_aware

        quanter = build_quant_aware(pact=quant_mode == "pact")
        quanter.quantize(model)
    if qat_checkpoint:
        load_state(model, checkpoint.state, checkpoint.path)
    return model, quanter


def model_from_checkpoint(model_name: str, path: str | Path | None, *, num_classes: int | None = None,
                          scale: float = 1.0) -> nn.Layer:
    """A float dygraph model in eval mode with the weights of ``path`` (random when ``None``)."""
    model, _ = build_from_checkpoint(model_name, read_checkpoint(path) if path else None,
                                     num_classes=num_classes, scale=scale)
    model.eval()
    return model
