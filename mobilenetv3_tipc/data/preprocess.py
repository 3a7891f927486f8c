"""The one evaluation preprocessing: decode RGB, resize short side, center crop, normalize, CHW.

Every inference path (``tools/predict.py``, ``deploy/inference_python``,
``deploy/onnx_python``, ``deploy/serving_python``) and ``train.py``'s evaluation
call :func:`preprocess`, so they all feed the model the same tensor.

The definition is torchvision's ``Resize(256)`` (bilinear, antialiased, on PIL) then
``CenterCrop(224)`` then ``Normalize`` on ``ToTensor``; :func:`resize_short` and
:func:`center_crop` spell it out. :func:`preprocess` computes the same tensor faster:
:func:`resize_center_crop` resamples only the cropped window, straight from
the source pixels (Pillow's ``resize(box=...)``, same bilinear filter and coefficients),
and :func:`normalize_chw` is one fused multiply-add into a preallocated array.
Measured against the definition (``tests/test_preprocess_fast.py``): at most one 8-bit
level apart (Pillow rounds the intermediate of its two resampling passes, and picks
the pass order by image size), i.e. ``max |delta| <= 1 / (255 * 0.224) = 0.0175`` after
normalization, on well under 1% of the values; the normalization alone is within 1e-6.
"""

from __future__ import annotations

import io
import logging
import os
import re
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Union

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
# The only Pillow formats decode_image opens, whatever a file is named: those of IMAGE_EXTENSIONS
# plus GIF (clients send it). Pillow's other plugins (DDS, BLP, AVIF, ...) are never tried: they
# raise errors of their own (NotImplementedError, RuntimeError, BLPFormatError) on crafted input.
ACCEPTED_FORMATS = ("JPEG", "PNG", "BMP", "WEBP", "TIFF", "GIF", "PPM")
# normalize: (x / 255 - mean) / std == x * _SCALE + _OFFSET, per channel, float32 (CHW broadcast)
_SCALE = (1.0 / (255.0 * np.asarray(IMAGENET_STD))).astype(np.float32).reshape(3, 1, 1)
_OFFSET = (-np.asarray(IMAGENET_MEAN) / np.asarray(IMAGENET_STD)).astype(np.float32).reshape(3, 1, 1)

# typing.Union, not ``|``: the real Paddle Serving env imports this module on Python 3.9
ImageSource = Union[str, "os.PathLike[str]", bytes, Image.Image]

_HEAP_ADDRESS = re.compile(r"<[^<>]* at 0x[0-9a-fA-F]+>")
_PILLOW_BOMB_PIXELS = re.compile(r"Image size \((\d+) pixels\)")


class ImageDecodeError(ValueError):
    """The input is not a usable image; the message says which input and why."""


class ImageTooLarge(ImageDecodeError):
    """The image declares more pixels than the limit; refused from its header, before decoding.

    ``__cause__`` is Pillow's DecompressionBombError/Warning when Pillow's own check (its larger
    limit) fired first; the message quotes our limit either way.
    """

    def __init__(self, name: str, limit: int, width: int | None = None, height: int | None = None,
                 pixels: int | None = None) -> None:
        if width and height:
            pixels = width * height
            size = f"{width}x{height} = {pixels:,} pixels"
        else:
            size = f"{pixels:,} pixels" if pixels else "larger"
        super().__init__(f"{name}: image is {size}, more than the limit of {limit:,}")
        self.width, self.height, self.pixels, self.limit = width, height, pixels, limit


def _describe(source: ImageSource) -> str:
    if isinstance(source, (bytes, bytearray)):
        return f"<{len(source)} bytes>"
    return str(source)


def _reason(exc: BaseException) -> str:
    """``exc`` as text for a message: its type when it says nothing, never a heap address."""
    text = _HEAP_ADDRESS.sub("the data", str(exc)).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def decode_image(source: ImageSource, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open a path, raw bytes or PIL image as a fully decoded RGB ``PIL.Image``.

    Only :data:`ACCEPTED_FORMATS` are opened. Every failure is an :class:`ImageDecodeError`
    naming the input (:class:`ImageTooLarge` above ``max_pixels``, checked from the header):
    Pillow raises many exception types, and one escaping into a data-loader thread hangs it.
    """
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
            with Image.open(stream, formats=ACCEPTED_FORMATS) as img:
                width, height = img.size
                if width * height > max_pixels:
                    raise ImageTooLarge(name, max_pixels, width, height)
                img.load()
                # An RGB image (most JPEGs) is returned as decoded: convert() would copy it.
                return img if img.mode == "RGB" else img.convert("RGB")
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's own limit (89,478,485 pixels warns, twice that fails) fired before ours
        declared = _PILLOW_BOMB_PIXELS.search(str(exc))
        raise ImageTooLarge(name, max_pixels, pixels=int(declared.group(1)) if declared else None) from exc
    except UnidentifiedImageError as exc:
        raise ImageDecodeError(f"{name}: not a decodable image (no decoder of the accepted formats "
                               f"{', '.join(ACCEPTED_FORMATS)})") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Pillow raises OSError for truncated files, SyntaxError for some broken headers.
        raise ImageDecodeError(f"{name}: corrupt or truncated image ({_reason(exc)})") from exc
    except Exception as exc:  # noqa: BLE001 - Pillow's plugins raise any type (struct.error, IndexError, ...)
        raise ImageDecodeError(f"{name}: not a decodable image ({_reason(exc)})") from exc


def resized_size(width: int, height: int, size: int = RESIZE_SIZE) -> tuple[int, int]:
    """``(width, height)`` after :func:`resize_short`: short side ``size``, long side truncated as torchvision."""
    if width <= height:
        return size, int(size * height / width)
    return int(size * width / height), size


def resize_short(img: Image.Image, size: int = RESIZE_SIZE) -> Image.Image:
    """Resize so the short side is ``size`` (bilinear, antialiased), as torchvision's Resize(int)."""
    width, height = img.size
    if min(width, height) == size:
        return img
    return img.resize(resized_size(width, height, size), Image.BILINEAR)


def _crop_origin(width: int, height: int, size: int) -> tuple[int, int]:
    return int(round((width - size) / 2.0)), int(round((height - size) / 2.0))


def center_crop(img: Image.Image, size: int = CROP_SIZE) -> Image.Image:
    """Crop the central ``size`` x ``size`` square (padding with black if the image is smaller)."""
    width, height = img.size
    if width < size or height < size:
        padded = Image.new("RGB", (max(width, size), max(height, size)))
        padded.paste(img, ((padded.width - width) // 2, (padded.height - height) // 2))
        img, width, height = padded, padded.width, padded.height
    left, top = _crop_origin(width, height, size)
    return img.crop((left, top, left + size, top + size))


def resize_center_crop(img: Image.Image, resize_size: int = RESIZE_SIZE, crop_size: int = CROP_SIZE) -> Image.Image:
    """``center_crop(resize_short(img, resize_size), crop_size)``, resampling only the crop.

    The crop window, mapped back to source coordinates, is Pillow's ``box``: the same
    bilinear filter with the same scale, evaluated for the crop's pixels only (the full
    resize computes all of them, then throws most away). At most one 8-bit level from
    the two-step result; a crop that needs padding, or an image whose short side is
    already ``resize_size``, takes the two-step path.
    """
    width, height = img.size
    new_w, new_h = resized_size(width, height, resize_size)
    if new_w < crop_size or new_h < crop_size or (new_w, new_h) == (width, height):
        return center_crop(resize_short(img, resize_size), crop_size)
    left, top = _crop_origin(new_w, new_h, crop_size)
    scale_x, scale_y = width / new_w, height / new_h
    box = (left * scale_x, top * scale_y, (left + crop_size) * scale_x, (top + crop_size) * scale_y)
    return img.resize((crop_size, crop_size), Image.BILINEAR, box=box)


def normalize_chw(img: Image.Image | np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Scale to [0, 1], subtract the ImageNet mean, divide by the std, HWC -> CHW float32.

    One fused multiply-add per value (within 1e-6 of the three-step formula), written
    into ``out`` (a C-contiguous ``(3, H, W)`` float32 array, e.g. one image of a batch)
    when given.
    """
    pixels = np.asarray(img)
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"normalize_chw needs an RGB image (H, W, 3), got an array of shape {pixels.shape}")
    chw = pixels.transpose(2, 0, 1)
    if out is None:
        out = np.empty(chw.shape, np.float32)
    elif out.shape != chw.shape or out.dtype != np.float32:
        raise ValueError(f"out must be float32 of shape {chw.shape}, got {out.dtype} {out.shape}")
    np.multiply(chw, _SCALE, out=out)
    out += _OFFSET
    return out


def preprocess(
    source: ImageSource,
    resize_size: int = RESIZE_SIZE,
    crop_size: int = CROP_SIZE,
    max_pixels: int = MAX_PIXELS,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Decode and transform one image into a ``(3, crop, crop)`` float32 array (``out`` if given)."""
    img = decode_image(source, max_pixels=max_pixels)
    return normalize_chw(resize_center_crop(img, resize_size, crop_size), out=out)


def preprocess_batch(
    sources: Sequence[ImageSource],
    resize_size: int = RESIZE_SIZE,
    crop_size: int = CROP_SIZE,
    max_pixels: int = MAX_PIXELS,
    *,
    workers: int = 1,
) -> np.ndarray:
    """:func:`preprocess` of several images as one ``(N, 3, crop, crop)`` batch, written in place.

    ``workers > 1`` spreads the images over that many threads (Pillow releases the GIL
    while it decodes and resizes); :class:`mobilenetv3_tipc.data.batching.BatchPreprocessor` keeps its
    threads between batches and overlaps a batch's preparation with the previous one's
    inference.
    """
    batch = np.empty((len(sources), 3, crop_size, crop_size), np.float32)

    def one(index: int) -> None:
        preprocess(sources[index], resize_size, crop_size, max_pixels, out=batch[index])

    if workers > 1 and len(sources) > 1:
        with ThreadPoolExecutor(min(workers, len(sources)), thread_name_prefix="preprocess") as pool:
            list(pool.map(one, range(len(sources))))
    else:
        for index in range(len(sources)):
            one(index)
    return batch


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
