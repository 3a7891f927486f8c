"""Loading ``.pdparams`` weights with errors that name every mismatched key."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import paddle

logger = logging.getLogger(__name__)

CLASSIFIER_WEIGHT = "classifier.3.weight"
# The same weight in a quant-aware-training checkpoint (the Linear is wrapped by a quantized layer).
QAT_CLASSIFIER_WEIGHT = "classifier.3._layer.weight"
QAT_KEY_MARK = "._fake_quant_"


def read_state_dict(path: str | Path) -> dict[str, object]:
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: expected a .pdparams file, got a directory")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weights file not found")
    try:
        state = paddle.load(str(path))
    except Exception as exc:  # paddle raises bare Exception/ValueError/pickle errors here
        raise ValueError(f"{path}: not a readable .pdparams file ({exc})") from exc
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    return state


def num_classes_of(state: dict[str, object]) -> int | None:
    """The classifier's output width in a MobileNetV3 state dict, if present."""
    weight = state.get(CLASSIFIER_WEIGHT, state.get(QAT_CLASSIFIER_WEIGHT))
    if weight is None:
        return None
    return int(np.shape(weight)[-1])


def is_quant_aware_state(state: dict[str, object]) -> bool:
    """Whether ``state`` was saved from a quant-aware (``--pact_quant``/``--quant``) model."""
    return any(QAT_KEY_MARK in key for key in state)


def load_weights(model: paddle.nn.Layer, path: str | Path) -> None:
    """Load ``path`` into ``model``; any missing, unexpected or mis-shaped key is an error."""
    load_state(model, read_state_dict(path), path)


def load_state(model: paddle.nn.Layer, state: dict[str, object], path: str | Path) -> None:
    """Load a state dict read from ``path``; any missing, unexpected or mis-shaped key is an error."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [
        f"{key}: file {list(np.shape(state[key]))} vs model {list(own[key].shape)}"
        for key in sorted(set(own) & set(state))
        if list(np.shape(state[key])) != list(own[key].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}")
    if unexpected:
        problems.append(f"unexpected keys: {', '.join(unexpected[:10])}{' ...' if len(unexpected) > 10 else ''}")
    if mismatched:
        problems.append("shape mismatches: " + "; ".join(mismatched[:10]))
    if problems:
        raise ValueError(f"{path} does not fit the model: " + " | ".join(problems))
    model.set_state_dict(state)
    logger.info("loaded weights from %s", path)
