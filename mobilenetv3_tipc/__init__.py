"""MobileNetV3 on PaddlePaddle 3: training, export, inference, quantization and serving.

Sub-packages (each owns one concern; see the README's "Layout"):
``cli`` (exit codes, flags, logging), ``model``, ``data``, ``training``, ``export``,
``inference``, ``quantization``, ``serving``, ``tipc``.
"""

__version__ = "0.1.0"
