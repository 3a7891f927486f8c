"""Quant-aware training (QAT, optionally with PACT) helpers for ``train.py --pact_quant``/``--quant``
and ``tools/export_model.py``.

API: ``paddle.quantization.ImperativeQuantAware`` (Paddle's own dygraph QAT; paddleslim's
``quant_aware`` for dygraph wraps it), with a PACT activation-clipping layer as
``act_preprocess_layer`` for ``--pact_quant``. Verified on Paddle 3.3.1 CPU:
``save_quantized_model`` writes a legacy ``inference.pdmodel`` that Paddle Inference runs with
oneDNN int8. It needs the **legacy (non-PIR) program mode**: the process must be started with
``FLAGS_enable_pir_api=0`` (read when paddle is imported; the entry points re-run themselves with
:func:`mobilenetv3_tipc.cli.reexec_without_pir`).

Usage (training)::

    net = build_model(...); load_weights(net, float_weights)
    quanter = build_quant_aware(pact=True)
    quanter.quantize(net)            # in place: Conv2D/Linear -> quantized layers
    ... train as usual; paddle.save(net.state_dict(), "latest.pdparams")

Usage (export)::

    net = build_model(...); quanter = build_quant_aware(pact=True); quanter.quantize(net)
    net.set_state_dict(paddle.load("latest.pdparams"))
    save_int8_inference(quanter, net, out_dir, summary={...})
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from mobilenetv3_tipc.cli import PIR_FLAG, pir_disabled
from mobilenetv3_tipc.export import layout

logger = logging.getLogger(__name__)

QUANTIZABLE_LAYERS = ("Conv2D", "Linear")
PACT_INIT_ALPHA = 20.0


def require_legacy_mode() -> None:
    """Raise when Paddle runs with PIR (QAT export writes legacy programs only)."""
    if not pir_disabled():
        raise RuntimeError(f"quant-aware training/export needs {PIR_FLAG}=0 set before paddle is imported")


def pact_layer() -> type:
    """The PACT activation clipping layer class (created lazily so importing this module is cheap)."""
    import paddle

    class PACT(paddle.nn.Layer):
        """Clip activations to [-alpha, alpha] with a learned alpha (Choi et al., 2018)."""

        def __init__(self) -> None:
            super().__init__()
            self.alpha = self.create_parameter(
                shape=[1], dtype="float32",
                attr=paddle.ParamAttr(initializer=paddle.nn.initializer.Constant(PACT_INIT_ALPHA)),
            )

        def forward(self, x: paddle.Tensor) -> paddle.Tensor:
            upper = paddle.nn.functional.relu(x - self.alpha)
            lower = paddle.nn.functional.relu(-self.alpha - x)
            return x - upper + lower

    return PACT


def build_quant_aware(pact: bool = True) -> Any:
    """An ``ImperativeQuantAware``: int8 channel-wise weights, moving-average activations, ONNX format."""
    from paddle.quantization import ImperativeQuantAware

    require_legacy_mode()
    return ImperativeQuantAware(
        weight_quantize_type="channel_wise_abs_max",
        activation_quantize_type="moving_average_abs_max",
        quantizable_layer_type=list(QUANTIZABLE_LAYERS),
        act_preprocess_layer=pact_layer() if pact else None,
        onnx_format=True,
    )


def save_int8_inference(quanter: Any, net: Any, out_dir: str | Path, img_size: int = 224,
                        summary: dict[str, object] | None = None) -> Path:
    """Save ``Sequential(net, Softmax)`` as an int8 inference model plus ``quantization.json``."""
    import paddle

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    net.eval()
    wrapped = paddle.nn.Sequential(net, paddle.nn.Softmax())
    wrapped.eval()
    spec = [paddle.static.InputSpec([None, 3, img_size, img_size], "float32", name="input")]
    quanter.save_quantized_model(wrapped, str(out / "inference"), input_spec=spec)
    marker = {
        "quantized": True,
        "method": "quant-aware training (paddle.quantization.ImperativeQuantAware)",
        "format": "legacy program, ONNX-style quantize_linear/dequantize_linear",
        "runs_with": "infer.py --precision int8 --enable-mkldnn True (CPU oneDNN); TensorRT int8 on GPU",
        "weight_bits": 8,
        "activation_bits": 8,
        "paddle_version": paddle.__version__,
        **(summary or {}),
    }
    (out / layout.QUANT_MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
    logger.info("int8 (QAT) inference model saved to %s", out)
    return out
