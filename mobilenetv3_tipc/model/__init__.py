"""MobileNetV3 models: ``build_model(name, num_classes=..., scale=...)``."""

from mobilenetv3_tipc.model.mobilenetv3 import MobileNetV3, build_model, make_divisible, model_names

__all__ = ["MobileNetV3", "build_model", "make_divisible", "model_names"]
