"""Paddle Serving pipeline-protocol HTTP service for MobileNetV3 (see README.md)."""
