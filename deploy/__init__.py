"""Deployment entry points (Paddle Inference, ONNX Runtime, serving, quantization) over ``mobilenetv3_tipc``."""
