"""Train and eval transforms; eval is exactly :mod:`mobilenetv3_tipc.data.preprocess`."""

from __future__ import annotations

from functools import partial

import numpy as np
from paddle.vision import transforms as T
from PIL import Image

from mobilenetv3_tipc.data.preprocess import normalize_chw, resize_center_crop


class TrainTransform:
    """RandomResizedCrop + RandomHorizontalFlip(0.5) + Normalize, as torchvision's preset."""

    def __init__(self, crop_size: int = 224, scale: tuple[float, float] = (0.08, 1.0)) -> None:
        self.augment = T.Compose([T.RandomResizedCrop(crop_size, scale=scale), T.RandomHorizontalFlip(0.5)])

    def __call__(self, image: Image.Image) -> np.ndarray:
        return normalize_chw(self.augment(image))


def _eval_transform(image: Image.Image, resize_size: int, crop_size: int) -> np.ndarray:
    return normalize_chw(resize_center_crop(image, resize_size, crop_size))


def eval_transform(resize_size: int = 256, crop_size: int = 224) -> partial:
    """Resize(short side) + CenterCrop + Normalize, the same code every deploy path runs."""
    return partial(_eval_transform, resize_size=resize_size, crop_size=crop_size)
