"""Training-side helpers for ``train.py``: data sets, augmentation, metrics, distribution."""
