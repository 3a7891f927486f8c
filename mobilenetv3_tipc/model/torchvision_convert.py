"""Convert a torchvision MobileNetV3 ``state_dict`` (``.pth``) into Paddle ``.pdparams``.

    python tools/convert_torchvision.py --src mobilenet_v3_small-047dcff4.pth \
        --dst mobilenet_v3_small_torchvision.pdparams --model mobilenet_v3_small

The two models have the same module tree, so the mapping is one to one:
BatchNorm ``running_mean``/``running_var`` become ``_mean``/``_variance``,
``num_batches_tracked`` is dropped and Linear weights are transposed (Paddle
stores them as ``[in, out]``). Every missing, unexpected or mis-shaped key is
reported by name and nothing is written. Reading ``.pth`` needs PyTorch (optional;
the rest of the project never imports it); an ``.npz`` of the same keys works without it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

from mobilenetv3_tipc.cli import EXIT_OK, run_main

logger = logging.getLogger("convert_torchvision")

_RENAMES = {"running_mean": "_mean", "running_var": "_variance"}


class ConversionError(ValueError):
    """The source state dict does not fit the model; the message lists every key at fault."""


def load_torch_state(path: str | Path) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    if path.suffix == ".npz":
        with np.load(path) as data:
            return {key: data[key] for key in data.files}
    try:
        import torch
    except ImportError as exc:
        raise RuntimeError(
            "reading a .pth checkpoint needs PyTorch: pip install torch (or pass an .npz of the state dict)"
        ) from exc
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]  # a torchvision references/ checkpoint
    return {key: value.detach().cpu().numpy() for key, value in state.items()}


def paddle_key(torch_key: str) -> str:
    prefix, _, leaf = torch_key.rpartition(".")
    return f"{prefix}.{_RENAMES.get(leaf, leaf)}" if prefix else _RENAMES.get(leaf, leaf)


def convert_state_dict(torch_state: dict[str, np.ndarray], model) -> dict[str, np.ndarray]:  # noqa: ANN001
    """Map ``torch_state`` onto ``model`` (a Paddle MobileNetV3); raise listing every mismatch."""
    from paddle import nn

    linear_weights = {f"{name}.weight" for name, layer in model.named_sublayers() if isinstance(layer, nn.Linear)}
    target = {key: list(value.shape) for key, value in model.state_dict().items()}
    converted: dict[str, np.ndarray] = {}
    unexpected, mismatched = [], []
    for key, value in torch_state.items():
        if key.endswith("num_batches_tracked"):
            continue
        new_key = paddle_key(key)
        array = np.asarray(value, dtype=np.float32)
        if new_key in linear_weights:
            array = array.T
        if new_key not in target:
            unexpected.append(key)
        elif list(array.shape) != target[new_key]:
            mismatched.append(f"{key} -> {new_key}: source {list(array.shape)} vs model {target[new_key]}")
        else:
            converted[new_key] = np.ascontiguousarray(array)
    missing = sorted(set(target) - set(converted) - {m.split(" -> ")[1].split(":")[0] for m in mismatched})
    problems = []
    if missing:
        problems.append("missing: " + ", ".join(missing))
    if unexpected:
        problems.append("unexpected: " + ", ".join(unexpected))
    if mismatched:
        problems.append("shape mismatch: " + "; ".join(mismatched))
    if problems:
        raise ConversionError(" | ".join(problems))
    return converted


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", required=True, help="torchvision state dict (.pth, or .npz of the same keys)")
    parser.add_argument("--dst", required=True, help="Paddle weights to write (.pdparams)")
    parser.add_argument("--model", default="mobilenet_v3_small", help="model name (default: %(default)s)")
    parser.add_argument("--scale", type=float, default=1.0, help="width multiplier (default: 1.0)")
    return parser


def run(argv: list[str] | None) -> int:
    args = get_args_parser().parse_args(argv)
    import paddle

    from mobilenetv3_tipc.model import build_model

    torch_state = load_torch_state(args.src)
    classifier = torch_state.get("classifier.3.weight")
    num_classes = int(classifier.shape[0]) if classifier is not None else 1000
    net = build_model(args.model, num_classes=num_classes, scale=args.scale)
    converted = convert_state_dict(torch_state, net)
    net.set_state_dict({key: paddle.to_tensor(value) for key, value in converted.items()})
    Path(args.dst).parent.mkdir(parents=True, exist_ok=True)
    paddle.save(net.state_dict(), args.dst)
    logger.info("converted %d tensors (%d classes) from %s to %s", len(converted), num_classes, args.src, args.dst)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    return run_main(run, argv)


if __name__ == "__main__":
    sys.exit(main())
