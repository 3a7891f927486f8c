"""Framework-free image handling shared by every path: predict, Paddle Inference, ONNX, serving.

Only numpy and Pillow are needed here, so deployment code that does not use
Paddle (ONNX Runtime, the HTTP client) can import it.
"""
