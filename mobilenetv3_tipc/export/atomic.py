"""Crash-safe writes for the artefacts a later step reads (checkpoints, exported models).

A file is written under a temporary name in its own folder, flushed to disk (fsync) and renamed
over the final name (``os.replace``, atomic on POSIX), then the folder entry is synced: a reader,
or a run after a crash, sees the old file or the new one, never a part. A folder is built under a
temporary sibling name and renamed into place the same way. Standard library only.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

TEMP_MARK = ".tmp-"
_CHUNK = 1 << 20


def temp_name(path: Path) -> Path:
    """``DIR/.NAME.tmp-PID``: hidden, next to ``path`` (same file system), unique per process."""
    return path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}")


def fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def fsync_dir(path: Path) -> None:
    """Make renames and new entries in folder ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_atomic(path: str | Path, write: Callable[[Path], None]) -> Path:
    """``write(temp)`` then fsync and rename the temp file over ``path``; the temp file never stays."""
    path = Path(path)
    temp = temp_name(path)
    try:
        write(temp)
        fsync_file(temp)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    fsync_dir(path.parent)
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_file_atomic(path, lambda temp: temp.write_text(text, encoding="utf-8"))


def link_or_copy_atomic(source: Path, target: Path) -> None:
    """``target`` becomes a second name of ``source`` (a copy where hard links are not allowed)."""
    temp = temp_name(target)
    temp.unlink(missing_ok=True)
    try:
        try:
            os.link(source, temp)
        except OSError:
            shutil.copyfile(source, temp)
            fsync_file(temp)
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)


def remove_stale_temps(folder: Path, prefix: str = "") -> None:
    """Delete temp files (or folders) that a killed writer left in ``folder`` for names starting with ``prefix``."""
    for stale in folder.glob(f".{prefix}*{TEMP_MARK}*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def file_digest(path: Path) -> dict[str, object]:
    """``{"size": bytes, "sha256": hex}`` of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return {"size": path.stat().st_size, "sha256": digest.hexdigest()}


def digest_mismatch(path: Path, recorded: dict[str, object]) -> str | None:
    """Why ``path`` is not the file ``recorded`` describes (missing, size, content), else None."""
    if not path.is_file():
        return f"{path.name} is missing"
    size = path.stat().st_size
    if size != recorded.get("size"):
        return f"{path.name} has {size} bytes, {recorded.get('size')} recorded"
    if file_digest(path)["sha256"] != recorded.get("sha256"):
        return f"{path.name} has other content (sha256) than recorded"
    return None


def replace_dir_atomic(build: Callable[[Path], None], target: str | Path) -> Path:
    """``build(temp_folder)``, then the finished folder takes ``target``'s place.

    A crash while building leaves ``target`` as it was. An existing ``target`` is renamed aside
    and removed after the swap; the one moment without ``target`` is between two renames.
    """
    target = Path(target)
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(parent, target.name)
    temp = temp_name(target)
    old = target.with_name(f".{target.name}.old{TEMP_MARK}{os.getpid()}")
    temp.mkdir()
    try:
        build(temp)
        for item in temp.iterdir():
            if item.is_file():
                fsync_file(item)
        fsync_dir(temp)
        if target.exists():
            os.replace(target, old)
        try:
            os.replace(temp, target)
        except OSError:
            if old.exists():
                os.replace(old, target)
            raise
        fsync_dir(parent)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return target
