"""MobileNetV3 architecture: shapes, parameter counts, registry, torchvision key layout."""

from __future__ import annotations

import paddle
import pytest

from mobilenetv3_tipc.model import build_model, make_divisible, model_names

# torchvision.models.mobilenet_v3_small / _large at 1000 classes (trainable parameters).
TORCHVISION_PARAMS = {"mobilenet_v3_small": 2_542_856, "mobilenet_v3_large": 5_483_032}


def trainable_parameters(model: paddle.nn.Layer) -> int:
    return sum(int(p.numel()) for p in model.parameters() if not p.stop_gradient)


@pytest.mark.parametrize("name", sorted(TORCHVISION_PARAMS))
def test_parameter_count_equals_torchvision(name: str) -> None:
    assert trainable_parameters(build_model(name)) == TORCHVISION_PARAMS[name]


@pytest.mark.parametrize("name", model_names())
@pytest.mark.parametrize("scale", [0.5, 0.75, 1.0, 1.25])
def test_output_shape(name: str, scale: float) -> None:
    model = build_model(name, num_classes=7, scale=scale)
    model.eval()
    with paddle.no_grad():
        out = model(paddle.randn([2, 3, 96, 96]))
    assert list(out.shape) == [2, 7]


def test_unknown_model_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="mobilenet_v3_large, mobilenet_v3_small"):
        build_model("mobilenet_v4_tiny")


def test_make_divisible_matches_torchvision_rounding() -> None:
    assert make_divisible(16 * 0.75) == 16  # int(12 + 4) // 8 * 8 = 16
    assert make_divisible(24 * 0.5) == 16
    assert make_divisible(1024 * 1.25) == 1280
    assert make_divisible(3) == 8
    assert make_divisible(36) == 40  # 32 would lose more than 10%


def test_batchnorm_uses_paddle_momentum_convention() -> None:
    bns = [m for m in build_model("mobilenet_v3_small").sublayers() if isinstance(m, paddle.nn.BatchNorm2D)]
    assert bns
    assert all(abs(bn._momentum - 0.99) < 1e-9 and abs(bn._epsilon - 1e-3) < 1e-12 for bn in bns)


def test_state_dict_uses_torchvision_names() -> None:
    keys = list(build_model("mobilenet_v3_small").state_dict())
    assert keys[:5] == [
        "features.0.0.weight", "features.0.1.weight", "features.0.1.bias",
        "features.0.1._mean", "features.0.1._variance",
    ]
    assert "features.1.block.1.fc1.weight" in keys  # SE block of the first bneck
    assert "features.12.0.weight" in keys  # last 1x1 conv (576 channels)
    assert keys[-4:] == ["classifier.0.weight", "classifier.0.bias", "classifier.3.weight", "classifier.3.bias"]


def test_dropout_and_hidden_width() -> None:
    small, large = build_model("mobilenet_v3_small"), build_model("mobilenet_v3_large")
    assert small.classifier[0].weight.shape == [576, 1024]
    assert large.classifier[0].weight.shape == [960, 1280]
    assert small.classifier[2].p == pytest.approx(0.2)
