"""MobileNetV3 small and large for PaddlePaddle, layer for layer torchvision's.

The architecture is one table of block settings per variant and one builder.
Sub-layer names and their order match ``torchvision.models.mobilenetv3`` so a
torchvision ``state_dict`` maps one to one onto this model (see
``tools/convert_torchvision.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import paddle
from paddle import nn

__all__ = [
    "BlockSetting",
    "MobileNetV3",
    "build_model",
    "make_divisible",
    "model_names",
]

# torchvision uses BatchNorm2d(eps=0.001, momentum=0.01) in PyTorch's convention,
# where momentum weighs the new batch. Paddle's momentum weighs the running value,
# so the same update is momentum=0.99 here.
BN_EPSILON = 1e-3
BN_MOMENTUM = 0.99


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``value`` to a multiple of ``divisor``, never losing more than 10%."""
    min_value = divisor if min_value is None else min_value
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return new_value


@dataclass(frozen=True)
class BlockSetting:
    """One inverted-residual block, in torchvision's column order."""

    input_channels: int
    kernel: int
    expanded_channels: int
    out_channels: int
    use_se: bool
    activation: str  # "RE" (ReLU) or "HS" (hardswish)
    stride: int
    dilation: int = 1

    def scaled(self, width_mult: float) -> BlockSetting:
        def adjust(channels: int) -> int:
            return make_divisible(channels * width_mult, 8)

        return BlockSetting(
            adjust(self.input_channels),
            self.kernel,
            adjust(self.expanded_channels),
            adjust(self.out_channels),
            self.use_se,
            self.activation,
            self.stride,
            self.dilation,
        )


# (input, kernel, expanded, output, SE, activation, stride) as in the paper's Tables 1-2.
SMALL_BLOCKS = (
    BlockSetting(16, 3, 16, 16, True, "RE", 2),
    BlockSetting(16, 3, 72, 24, False, "RE", 2),
    BlockSetting(24, 3, 88, 24, False, "RE", 1),
    BlockSetting(24, 5, 96, 40, True, "HS", 2),
    BlockSetting(40, 5, 240, 40, True, "HS", 1),
    BlockSetting(40, 5, 240, 40, True, "HS", 1),
    BlockSetting(40, 5, 120, 48, True, "HS", 1),
    BlockSetting(48, 5, 144, 48, True, "HS", 1),
    BlockSetting(48, 5, 288, 96, True, "HS", 2),
    BlockSetting(96, 5, 576, 96, True, "HS", 1),
    BlockSetting(96, 5, 576, 96, True, "HS", 1),
)
LARGE_BLOCKS = (
    BlockSetting(16, 3, 16, 16, False, "RE", 1),
    BlockSetting(16, 3, 64, 24, False, "RE", 2),
    BlockSetting(24, 3, 72, 24, False, "RE", 1),
    BlockSetting(24, 5, 72, 40, True, "RE", 2),
    BlockSetting(40, 5, 120, 40, True, "RE", 1),
    BlockSetting(40, 5, 120, 40, True, "RE", 1),
    BlockSetting(40, 3, 240, 80, False, "HS", 2),
    BlockSetting(80, 3, 200, 80, False, "HS", 1),
    BlockSetting(80, 3, 184, 80, False, "HS", 1),
    BlockSetting(80, 3, 184, 80, False, "HS", 1),
    BlockSetting(80, 3, 480, 112, True, "HS", 1),
    BlockSetting(112, 3, 672, 112, True, "HS", 1),
    BlockSetting(112, 5, 672, 160, True, "HS", 2),
    BlockSetting(160, 5, 960, 160, True, "HS", 1),
    BlockSetting(160, 5, 960, 160, True, "HS", 1),
)
# name -> (block table, classifier hidden width before scaling)
_VARIANTS: dict[str, tuple[tuple[BlockSetting, ...], int]] = {
    "mobilenet_v3_small": (SMALL_BLOCKS, 1024),
    "mobilenet_v3_large": (LARGE_BLOCKS, 1280),
}


def _activation(name: str | None) -> nn.Layer | None:
    return {"RE": nn.ReLU, "HS": nn.Hardswish, None: lambda: None}[name]()


class ConvNormActivation(nn.Sequential):
    """Conv2D (no bias) + BatchNorm + optional activation: torchvision's Conv2dNormActivation."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        dilation: int = 1,
        activation: str | None = "HS",
    ) -> None:
        padding = (kernel_size - 1) // 2 * dilation
        layers: list[nn.Layer] = [
            nn.Conv2D(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=padding,
                dilation=dilation,
                groups=groups,
                bias_attr=False,
            ),
            nn.BatchNorm2D(out_channels, momentum=BN_MOMENTUM, epsilon=BN_EPSILON),
        ]
        act = _activation(activation)
        if act is not None:
            layers.append(act)
        super().__init__(*layers)


class SqueezeExcitation(nn.Layer):
    """SE block with a ReLU squeeze and a hardsigmoid gate (torchvision's names fc1/fc2)."""

    def __init__(self, channels: int, squeeze_channels: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2D(1)
        self.fc1 = nn.Conv2D(channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2D(squeeze_channels, channels, 1)
        self.activation = nn.ReLU()
        self.scale_activation = nn.Hardsigmoid()

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        scale = self.avgpool(x)
        scale = self.activation(self.fc1(scale))
        scale = self.scale_activation(self.fc2(scale))
        return scale * x


class InvertedResidual(nn.Layer):
    def __init__(self, cfg: BlockSetting) -> None:
        super().__init__()
        if cfg.stride not in (1, 2):
            raise ValueError(f"illegal stride value {cfg.stride}")
        self.use_res_connect = cfg.stride == 1 and cfg.input_channels == cfg.out_channels
        layers: list[nn.Layer] = []
        if cfg.expanded_channels != cfg.input_channels:
            layers.append(
                ConvNormActivation(
                    cfg.input_channels, cfg.expanded_channels, 1, activation=cfg.activation
                )
            )
        stride = 1 if cfg.dilation > 1 else cfg.stride
        layers.append(
            ConvNormActivation(
                cfg.expanded_channels,
                cfg.expanded_channels,
                cfg.kernel,
                stride=stride,
                groups=cfg.expanded_channels,
                dilation=cfg.dilation,
                activation=cfg.activation,
            )
        )
        if cfg.use_se:
            squeeze = make_divisible(cfg.expanded_channels // 4, 8)
            layers.append(SqueezeExcitation(cfg.expanded_channels, squeeze))
        layers.append(
            ConvNormActivation(cfg.expanded_channels, cfg.out_channels, 1, activation=None)
        )
        self.block = nn.Sequential(*layers)
        self.out_channels = cfg.out_channels

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        result = self.block(x)
        if self.use_res_connect:
            result = result + x
        return result


class MobileNetV3(nn.Layer):
    """features -> avgpool -> classifier, exactly torchvision's module tree."""

    def __init__(
        self,
        blocks: tuple[BlockSetting, ...],
        last_channel: int,
        num_classes: int = 1000,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        if not blocks:
            raise ValueError("the block table must not be empty")
        first_channels = blocks[0].input_channels
        layers: list[nn.Layer] = [ConvNormActivation(3, first_channels, 3, stride=2)]
        layers.extend(InvertedResidual(cfg) for cfg in blocks)
        last_in = blocks[-1].out_channels
        last_out = 6 * last_in
        layers.append(ConvNormActivation(last_in, last_out, 1))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2D(1)
        self.classifier = nn.Sequential(
            nn.Linear(last_out, last_channel),
            nn.Hardswish(),
            nn.Dropout(p=dropout),
            nn.Linear(last_channel, num_classes),
        )
        self.num_classes = num_classes
        self._init_weights()

    def _init_weights(self) -> None:
        for layer in self.sublayers():
            if isinstance(layer, nn.Conv2D):
                # kaiming_normal_(mode="fan_out") as torchvision: fan_out = out * kh * kw
                out_channels, _, kh, kw = layer.weight.shape
                std = math.sqrt(2.0 / (out_channels * kh * kw))
                layer.weight.set_value(paddle.normal(0.0, std, layer.weight.shape))
                if layer.bias is not None:
                    layer.bias.set_value(paddle.zeros(layer.bias.shape))
            elif isinstance(layer, nn.BatchNorm2D):
                layer.weight.set_value(paddle.ones(layer.weight.shape))
                layer.bias.set_value(paddle.zeros(layer.bias.shape))
            elif isinstance(layer, nn.Linear):
                layer.weight.set_value(paddle.normal(0.0, 0.01, layer.weight.shape))
                layer.bias.set_value(paddle.zeros(layer.bias.shape))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = paddle.flatten(x, 1)
        return self.classifier(x)


def _build(name: str, scale: float = 1.0, num_classes: int = 1000, dropout: float = 0.2) -> MobileNetV3:
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    blocks, hidden = _VARIANTS[name]
    scaled = tuple(cfg.scaled(scale) for cfg in blocks)
    return MobileNetV3(scaled, make_divisible(hidden * scale, 8), num_classes, dropout)


MODEL_REGISTRY: dict[str, Callable[..., MobileNetV3]] = {
    name: partial(_build, name) for name in _VARIANTS
}


def model_names() -> list[str]:
    return sorted(MODEL_REGISTRY)


def build_model(name: str, **kwargs: object) -> MobileNetV3:
    """Build a registered model: ``build_model("mobilenet_v3_small", num_classes=10)``."""
    try:
        builder = MODEL_REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown model {name!r}; valid names: {', '.join(model_names())}"
        ) from None
    return builder(**kwargs)
