"""Inference engines: Paddle Inference and ONNX Runtime predictors (one base), engine selection,
batch classification, the backend agreement gate and the AutoLog-style timing report."""
