"""Image lists for the ONNX tools: a file, a folder of images, or an ImageNet-style folder of class folders.

:func:`vision.preprocess.list_images` accepts a file or a flat folder. The TIPC
configs point ``--img_path`` at ``./lite_data/val``, whose images sit one level
down in class folders (``val/<wnid>/*.JPEG``), so :func:`collect_images` falls
back to the class folders when a folder holds no images itself.
"""

from __future__ import annotations

import os
from pathlib import Path

from vision.preprocess import list_images


def collect_images(path: str | os.PathLike, limit: int = 0) -> list[Path]:
    """Images of ``path`` (file, flat folder, or folder of class folders), sorted; at most ``limit`` if > 0."""
    root = Path(path)
    try:
        images = list_images(root)
    except FileNotFoundError:
        if not root.is_dir():
            raise
        images = []
        for sub in sorted(p for p in root.iterdir() if p.is_dir()):
            try:
                images.extend(list_images(sub))
            except FileNotFoundError:
                continue
        if not images:
            raise FileNotFoundError(f"{root}: no images in the folder or in its sub-folders") from None
    return images[:limit] if limit > 0 else images
