"""Image handling shared by every path: preprocessing, batching, labels, post-processing, data sets.

``preprocess``, ``batching``, ``labels`` and ``postprocess`` need only numpy and Pillow (and run on
Python 3.9), so deployment code without Paddle (ONNX Runtime, the HTTP client, the Paddle Serving
env) can import them; ``datasets`` and ``transforms`` are the training side and import Paddle.
"""
