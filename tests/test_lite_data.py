"""Checks on the shipped small data set ``test_images/lite_data.tar``.

No paddle here: only the archive layout, the list files and the JPEGs.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
TAR_PATH = REPO_ROOT / "test_images" / "lite_data.tar"
DEMO_PATH = REPO_ROOT / "images" / "demo.jpg"
MAX_TAR_BYTES = 4 * 1024 * 1024
NUM_CLASSES = 4
PER_SPLIT = 16


@pytest.fixture(scope="module")
def lite_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("lite")
    with tarfile.open(TAR_PATH) as tar:
        for member in tar.getmembers():
            assert not member.name.startswith("/"), member.name
            assert ".." not in Path(member.name).parts, member.name
            assert member.isfile() or member.isdir(), member.name
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
        else:  # pragma: no cover - old Python without extraction filters
            tar.extractall(dest)
    root = dest / "lite_data"
    assert root.is_dir()
    return root


def _read_list(path: Path) -> list[tuple[str, int]]:
    entries = []
    for line in path.read_text().splitlines():
        rel, label = line.rsplit(" ", 1)
        entries.append((rel, int(label)))
    return entries


def test_tar_exists_and_small() -> None:
    assert TAR_PATH.is_file()
    assert TAR_PATH.stat().st_size <= MAX_TAR_BYTES


@pytest.mark.parametrize("split", ["train", "val"])
def test_split_layout(lite_root: Path, split: str) -> None:
    split_dir = lite_root / split
    class_dirs = sorted(p for p in split_dir.iterdir() if p.is_dir())
    assert len(class_dirs) == NUM_CLASSES
    images = sorted(split_dir.glob("*/*.JPEG"))
    assert len(images) == PER_SPLIT
    assert sorted(p for p in split_dir.rglob("*") if p.is_file()) == images
    for path in images:
        with Image.open(path) as img:
            assert img.format == "JPEG"
            img.load()
            assert img.mode == "RGB"
            assert min(img.size) >= 224, (path, img.size)


def test_same_classes_in_both_splits(lite_root: Path) -> None:
    train = sorted(p.name for p in (lite_root / "train").iterdir())
    val = sorted(p.name for p in (lite_root / "val").iterdir())
    assert train == val


@pytest.mark.parametrize("split", ["train", "val"])
def test_list_file_matches_folders(lite_root: Path, split: str) -> None:
    classes = sorted(p.name for p in (lite_root / split).iterdir())
    label_of = {wnid: i for i, wnid in enumerate(classes)}
    entries = _read_list(lite_root / f"{split}_list.txt")
    on_disk = sorted(p.relative_to(lite_root).as_posix() for p in (lite_root / split).glob("*/*.JPEG"))
    assert sorted(rel for rel, _ in entries) == on_disk
    for rel, label in entries:
        parts = rel.split("/")
        assert parts[0] == split
        assert label == label_of[parts[1]], rel


def test_labels_file(lite_root: Path) -> None:
    lines = (lite_root / "labels.txt").read_text().splitlines()
    assert len(lines) == NUM_CLASSES
    wnids = [line.split(" ", 1)[0] for line in lines]
    assert wnids == sorted(p.name for p in (lite_root / "train").iterdir())
    for line in lines:
        wnid, name = line.split(" ", 1)
        assert wnid.startswith("n") and wnid[1:].isdigit() and len(wnid) == 9
        assert name.strip()


def test_demo_image(lite_root: Path) -> None:
    assert DEMO_PATH.is_file()
    with Image.open(DEMO_PATH) as img:
        assert img.format == "JPEG"
        img.load()
        assert img.mode == "RGB"
        assert min(img.size) >= 224
    assert (lite_root / "test" / "demo.jpg").read_bytes() == (DEMO_PATH.read_bytes())
