"""The one evaluation preprocessing: decode RGB, resize short side, center crop, normalize, CHW.

Every inference path (``tools/predict.py``, ``deploy/inference_python``,
``deploy/onnx_python``, ``deploy/serving_python``) and ``train.py``'s evaluation
call :func:`preprocess`, so they all feed the model the same tensor.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESIZE_SIZE = 256
CROP_SIZE = 224
# Refuse images larger than this many pixels before decoding them (decompression bombs).
MAX_PIXELS = 64_000_000
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")

ImageSource = str | os.PathLike | bytes | Image.Image


class ImageDecodeError(ValueError):
    """The input is not a usable image; the message says which input and why."""


def _describe(source: ImageSource) -> str:
    if isinstance(source, (bytes, bytearray)):
        return f"<{len(source)} bytes>"
    return str(source)


def decode_image(source: ImageSource, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open a path, raw bytes or PIL image as a fully decoded RGB ``PIL.Image``."""
    if isinstance(source, Image.Image):
        return source.convert("RGB")
    name = _describe(source)
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise ImageDecodeError("empty image data")
        stream: io.IOBase | str | os.PathLike = io.BytesIO(source)
    else:
        if not Path(source).is_file():
            raise ImageDecodeError(f"{name}: no such image file")
        stream = source
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(stream) as img:
                width, height = img.size
                if width * height > max_pixels:
                    raise ImageDecodeError(
                        f"{name}: image is {width}x{height} = {width * height} pixels, "
                        f"more than the limit of {max_pixels}"
                    )
                img.load()
                return img.convert("RGB")
    except ImageDecodeError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(f"{name}: not a decodable image ({exc})") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        # Pillow raises OSError for truncated files, SyntaxError for some broken headers.
        raise ImageDecodeError(f"{name}: corrupt or truncated image ({exc})") from exc


def resize_short(img: Image.Image, size: int = RESIZE_SIZE) -> Image.Image:
    """Resize so the short side is ``size`` (bilinear, antialiased), as torchvision's Resize(int)."""
    width, height = img.size
    short, long = (width, height) if width <= height else (height, width)
    if short == size:
        return img
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
    return img.resize((new_w, new_h), Image.BILINEAR)


def center_crop(img: Image.Image, size: int = CROP_SIZE) -> Image.Image:
    """Crop the central ``size`` x ``size`` square (padding with black if the image is smaller)."""
    width, height = img.size
    if width < size or height < size:
        padded = Image.new("RGB", (max(width, size), max(height, size)))
        padded.paste(img, ((padded.width - width) // 2, (padded.height - height) // 2))
        img, width, height = padded, padded.width, padded.height
    left = int(round((width - size) / 2.0))
    top = int(round((height - size) / 2.0))
    return img.crop((left, top, left + size, top + size))


def normalize_chw(img: Image.Image) -> np.ndarray:
    """Scale to [0, 1], subtract the ImageNet mean, divide by the std, HWC -> CHW float32."""
    array = np.asarray(img, dtype=np.float32) / 255.0
    array = (array - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
    return np.ascontiguousarray(array.transpose(2, 0, 1))


def preprocess(
    source: ImageSource,
    resize_size: int = RESIZE_SIZE,
    crop_size: int = CROP_SIZE,
    max_pixels: int = MAX_PIXELS,
) -> np.ndarray:
    """Decode and transform one image into a ``(3, crop, crop)`` float32 array."""
    img = decode_image(source, max_pixels=max_pixels)
    return normalize_chw(center_crop(resize_short(img, resize_size), crop_size))


def preprocess_batch(sources: list[ImageSource], **kwargs: int) -> np.ndarray:
    """Stack :func:`preprocess` of several images into an ``(N, 3, crop, crop)`` batch."""
    return np.stack([preprocess(source, **kwargs) for source in sources])


def list_images(path: str | os.PathLike) -> list[Path]:
    """A single image file, or the images of a folder, sorted.

    A folder with no images of its own is searched recursively, so a data-set split
    with class sub-folders (``lite_data/val``) works too.
    """
    root = Path(path)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such image file or folder")

    def is_image(p: Path) -> bool:
        return p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()

    images = sorted(p for p in root.iterdir() if is_image(p)) or sorted(p for p in root.rglob("*") if is_image(p))
    if not images:
        raise FileNotFoundError(f"{root}: folder holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    return images
