"""Build the small ``lite_data`` test set from free-licence photographs.

The photographs come from ``skimage.data`` (they ship inside the
scikit-image wheel, so nothing is downloaded).  Every class is one
photograph; its 8 images (4 train + 4 val) are different random crops of
it, some mirrored, with a small brightness/contrast/colour jitter.  All
randomness comes from one seeded ``random.Random``, and the tar archive is
written with sorted entries and fixed metadata, so running the script twice
gives a byte-for-byte identical ``lite_data.tar`` (for the same Pillow /
libjpeg version).

This is a developer tool: scikit-image is needed here only, not by the
project at run time.  See ``test_images/README.md`` for the sources and
licences of the photographs.

Usage (from the repository root)::

    python test_images/make_lite_data.py
"""

from __future__ import annotations

import argparse
import io
import logging
import math
import random
import sys
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from mobilenetv3_tipc.cli import setup_logging

logger = logging.getLogger("make_lite_data")

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TAR = REPO_ROOT / "test_images" / "lite_data.tar"
DEFAULT_DEMO = REPO_ROOT / "images" / "demo.jpg"

ROOT_DIR = "lite_data"
TRAIN_PER_CLASS = 4
VAL_PER_CLASS = 4
MIN_AREA = 0.5  # each crop keeps at least this fraction of the photo
MAX_AREA = 0.95
MIN_RATIO = 3.0 / 4.0  # crop aspect ratio (w / h) range, log-uniform
MAX_RATIO = 4.0 / 3.0
MIN_SHORT = 256  # short side of the saved images, inclusive range
MAX_SHORT = 375
BRIGHTNESS = 0.12  # jitter factors are drawn from [1 - x, 1 + x]
CONTRAST = 0.12
SATURATION = 0.15
DEMO_SIZE = (500, 375)
MAX_TAR_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class ClassSpec:
    """One class: an ImageNet wnid and the ``skimage.data`` photo for it."""

    wnid: str
    name: str
    source: str  # name of the skimage.data function


# All four are ILSVRC-2012 (ImageNet-1k) classes.
CLASSES: tuple[ClassSpec, ...] = (
    ClassSpec("n02123045", "tabby cat", "chelsea"),
    ClassSpec("n03773504", "missile", "rocket"),
    ClassSpec("n04485082", "tripod", "camera"),
    ClassSpec("n07920052", "espresso", "coffee"),
)
DEMO_SOURCE = "chelsea"


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Generate test_images/lite_data.tar and images/demo.jpg from scikit-image sample photographs.",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_TAR,
        help="path of the tar archive to write (default: %(default)s)",
    )
    parser.add_argument(
        "--demo",
        type=Path,
        default=DEFAULT_DEMO,
        help="path of the demo JPEG to write (default: %(default)s)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=2024,
        help="random seed for crops and jitter (default: %(default)s)",
    )
    parser.add_argument(
        "--quality",
        type=int,
        default=85,
        help="JPEG quality (default: %(default)s)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log every image written",
    )
    return parser


def load_photo(source: str) -> Image.Image:
    """Load a ``skimage.data`` photograph as an RGB Pillow image."""
    from skimage import data  # dev-only dependency

    loader: Callable[[], np.ndarray] = getattr(data, source)
    array = np.asarray(loader())
    if array.ndim == 2:  # grey-level photo: replicate to 3 channels
        array = np.stack([array] * 3, axis=-1)
    array = array[..., :3]
    if array.dtype != np.uint8:
        raise ValueError(f"skimage.data.{source}() is not uint8")
    return Image.fromarray(np.ascontiguousarray(array)).convert("RGB")


def random_crop_box(
    rng: random.Random,
    width: int,
    height: int,
) -> tuple[int, int, int, int]:
    """A random box covering MIN_AREA..MAX_AREA of the image."""
    area = width * height * rng.uniform(MIN_AREA, MAX_AREA)
    ratio = math.exp(rng.uniform(math.log(MIN_RATIO), math.log(MAX_RATIO)))
    crop_w = math.sqrt(area * ratio)
    crop_h = math.sqrt(area / ratio)
    # Keep the area when the wanted shape does not fit the photo.
    if crop_w > width:
        crop_w, crop_h = width, area / width
    if crop_h > height:
        crop_w, crop_h = area / height, height
    cw = min(width, math.ceil(crop_w))
    ch = min(height, math.ceil(crop_h))
    left = rng.randint(0, width - cw)
    top = rng.randint(0, height - ch)
    return left, top, left + cw, top + ch


def make_variant(
    photo: Image.Image,
    rng: random.Random,
    flip: bool,
) -> Image.Image:
    """Crop, maybe mirror, jitter and resize one copy of ``photo``."""
    img = photo.crop(random_crop_box(rng, *photo.size))
    if flip:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    img = ImageEnhance.Brightness(img).enhance(rng.uniform(1 - BRIGHTNESS, 1 + BRIGHTNESS))
    img = ImageEnhance.Contrast(img).enhance(rng.uniform(1 - CONTRAST, 1 + CONTRAST))
    img = ImageEnhance.Color(img).enhance(rng.uniform(1 - SATURATION, 1 + SATURATION))
    short = rng.randint(MIN_SHORT, MAX_SHORT)
    scale = short / min(img.size)
    size = (
        max(short, round(img.width * scale)),
        max(short, round(img.height * scale)),
    )
    return img.resize(size, Image.Resampling.BICUBIC)


def make_demo(photo: Image.Image) -> Image.Image:
    """Centre 4:3 crop of ``photo`` resized to DEMO_SIZE, no jitter."""
    target = DEMO_SIZE[0] / DEMO_SIZE[1]
    width, height = photo.size
    if width / height > target:
        cw, ch = round(height * target), height
    else:
        cw, ch = width, round(width / target)
    left, top = (width - cw) // 2, (height - ch) // 2
    img = photo.crop((left, top, left + cw, top + ch))
    return img.resize(DEMO_SIZE, Image.Resampling.LANCZOS)


def encode_jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality, optimize=False, progressive=False)
    return buf.getvalue()


def build_members(
    seed: int,
    quality: int,
) -> tuple[dict[str, bytes], bytes]:
    """Return ``{archive path: file bytes}`` and the demo JPEG bytes."""
    rng = random.Random(seed)
    files: dict[str, bytes] = {}
    lists: dict[str, list[str]] = {"train": [], "val": []}
    classes = sorted(CLASSES, key=lambda c: c.wnid)
    for label, spec in enumerate(classes):
        photo = load_photo(spec.source)
        logger.info(
            "class %d %s (%s): skimage.data.%s() %dx%d",
            label,
            spec.wnid,
            spec.name,
            spec.source,
            *photo.size,
        )
        count = TRAIN_PER_CLASS + VAL_PER_CLASS
        flips = [i % 2 == 1 for i in range(count)]
        rng.shuffle(flips)
        for index in range(count):
            split = "train" if index < TRAIN_PER_CLASS else "val"
            rel = f"{split}/{spec.wnid}/{spec.source}_{index}.JPEG"
            img = make_variant(photo, rng, flips[index])
            files[f"{ROOT_DIR}/{rel}"] = encode_jpeg(img, quality)
            lists[split].append(f"{rel} {label}")
            logger.debug("%s %dx%d flip=%s", rel, *img.size, flips[index])
    for split, lines in lists.items():
        files[f"{ROOT_DIR}/{split}_list.txt"] = ("\n".join(sorted(lines)) + "\n").encode()
    files[f"{ROOT_DIR}/labels.txt"] = "".join(f"{c.wnid} {c.name}\n" for c in classes).encode()
    demo = encode_jpeg(make_demo(load_photo(DEMO_SOURCE)), quality)
    files[f"{ROOT_DIR}/test/demo.jpg"] = demo
    return files, demo


def _tar_info(name: str, is_dir: bool, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if is_dir else tarfile.REGTYPE
    info.mode = 0o755 if is_dir else 0o644
    info.size = size
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def write_tar(path: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` (plus their folders) as a reproducible tar."""
    dirs: set[str] = set()
    for name in files:
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))
    entries = sorted([(d, True) for d in dirs] + [(f, False) for f in files])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tarfile.open(tmp, "w", format=tarfile.GNU_FORMAT) as tar:
        for name, is_dir in entries:
            if is_dir:
                tar.addfile(_tar_info(name, True))
            else:
                data = files[name]
                tar.addfile(_tar_info(name, False, len(data)), io.BytesIO(data))
    tmp.replace(path)


def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    setup_logging()
    if args.verbose:
        logger.setLevel(logging.DEBUG)
    try:
        files, demo = build_members(args.seed, args.quality)
    except ImportError as exc:
        logger.error("scikit-image is needed to build the data: %s", exc)
        return 1
    write_tar(args.output, files)
    args.demo.parent.mkdir(parents=True, exist_ok=True)
    args.demo.write_bytes(demo)
    size = args.output.stat().st_size
    logger.info(
        "wrote %s (%d bytes, %d files) and %s",
        args.output,
        size,
        len(files),
        args.demo,
    )
    if size > MAX_TAR_BYTES:
        logger.error("%s is larger than %d bytes", args.output, MAX_TAR_BYTES)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
