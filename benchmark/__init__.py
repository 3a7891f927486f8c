"""Side-by-side CPU benchmark of every MobileNetV3 path the project offers: ``python -m benchmark``."""
