"""Deployment paths: Paddle Inference, ONNX Runtime, HTTP serving, quantization."""
