"""Image-classification data sets in the two layouts ``train.py`` reads.

* ImageNet folder layout: ``<root>/<split>/<class>/<image>`` (classes = sorted folder names).
* List-file layout: ``<root>/<split>_list.txt`` with ``relative/path label`` per line.

An optional ``<root>/labels.txt`` (``<class-folder> <human name>`` per line) gives
readable class names. Every problem is reported with the path (and line) at fault.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
from paddle.io import Dataset
from PIL import Image

from mobilenetv3_tipc.data.preprocess import IMAGE_EXTENSIONS, ImageDecodeError, decode_image

logger = logging.getLogger(__name__)

Sample = tuple[Path, int]


class DataError(ValueError):
    """The data set on disk is missing or malformed; the message names the file."""


def _scan_folder(split_dir: Path) -> tuple[list[Sample], list[str]]:
    """Samples labelled by the index of their folder in the sorted list of ALL class folders.

    As ``paddle.vision.datasets.DatasetFolder`` does, an empty class folder keeps its id (an
    ImageNet subset with a few populated classes still uses the 1000-class ids); the number of
    empty folders is logged once. Only a split without any image is an error.
    """
    classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    if not classes:
        raise DataError(f"{split_dir}: no class folders (expected {split_dir}/<class>/<image>)")
    samples: list[Sample] = []
    empty = 0
    for label, name in enumerate(classes):
        files = sorted(
            p for p in (split_dir / name).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
        )
        empty += not files
        samples.extend((path, label) for path in files)
    if not samples:
        raise DataError(f"{split_dir}: no images in any of its {len(classes)} class folders "
                        f"({', '.join(IMAGE_EXTENSIONS)})")
    if empty:
        logger.warning("%s: %d of %d class folders hold no images (their class ids are kept)",
                       split_dir, empty, len(classes))
    return samples, classes


def _read_list(list_file: Path, root: Path) -> list[Sample]:
    samples: list[Sample] = []
    for line_no, line in enumerate(list_file.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise DataError(f"{list_file}:{line_no}: expected 'relative/path label', got {line!r}")
        path, label = root / parts[0].strip(), int(parts[1])
        if label < 0:
            raise DataError(f"{list_file}:{line_no}: negative label {label}")
        if not path.is_file():
            raise DataError(f"{list_file}:{line_no}: image {path} does not exist")
        samples.append((path, label))
    if not samples:
        raise DataError(f"{list_file}: list file has no samples")
    return samples


def read_class_names(root: Path, classes: list[str]) -> list[str]:
    """Human-readable names from ``root/labels.txt`` when it lists the class folders."""
    labels_file = root / "labels.txt"
    if not labels_file.is_file():
        return classes
    names: dict[str, str] = {}
    for line in labels_file.read_text(encoding="utf-8").splitlines():
        key, _, name = line.strip().partition(" ")
        if key:
            names[key] = name.strip() or key
    return [names.get(c, c) for c in classes]


def find_samples(root: str | Path, split: str, layout: str = "auto") -> tuple[list[Sample], list[str]]:
    """``(samples, class_names)`` for ``split`` ("train" or "val") under ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: data path does not exist (expected {root}/train and {root}/val)")
    split_dir, list_file = root / split, root / f"{split}_list.txt"
    use_folder = layout == "folder" or (
        layout == "auto" and split_dir.is_dir() and any(p.is_dir() for p in split_dir.iterdir())
    )
    if use_folder:
        if not split_dir.is_dir():
            raise DataError(f"{split_dir}: split folder does not exist")
        samples, classes = _scan_folder(split_dir)
        return samples, read_class_names(root, classes)
    if list_file.is_file():
        samples = _read_list(list_file, root)
        num_classes = max(label for _, label in samples) + 1
        return samples, [str(i) for i in range(num_classes)]
    raise DataError(f"{root}: neither {split_dir}/<class>/ folders nor {list_file} found")


class ImageClassificationDataset(Dataset):
    """Decodes each image with the shared decoder and applies ``transform`` (PIL -> CHW array)."""

    def __init__(self, samples: list[Sample], transform: Callable[..., np.ndarray]) -> None:
        super().__init__()
        self.samples = samples
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.int64]:
        try:
            return self._load(index), np.int64(self.samples[index][1])
        except DataError as exc:
            # Raising here would kill Paddle's loader thread (--workers 0: the run hangs) or worker
            # process (a SystemError naming no file), so the sample is replaced by a blank image
            # tagged with label -(index + 1) and check_batch() raises in the training loop.
            logger.error("%s", exc)
            return self.transform(Image.new("RGB", (256, 256))), np.int64(-(index + 1))

    def _load(self, index: int) -> np.ndarray:
        """Decode and transform sample ``index``; any failure is a :class:`DataError` naming the file."""
        path = self.samples[index][0]
        try:
            return self.transform(decode_image(path))
        except ImageDecodeError as exc:
            raise DataError(f"corrupt image file: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - whatever breaks, the file must be named
            raise DataError(f"corrupt image file: {path}: cannot be prepared ({type(exc).__name__}: {exc})") from exc

    def check_batch(self, labels: np.ndarray) -> None:
        """Raise :class:`DataError` naming the file when a batch holds a sample that failed to load."""
        bad = labels[labels < 0]
        if bad.size:
            index = int(-bad.max()) - 1
            self._load(index)  # raises with the reason, in this process (workers do not share state)
            raise DataError(f"corrupt image file: {self.samples[index][0]} (failed in the data loader only)")
