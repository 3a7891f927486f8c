"""VisualDL scalars for a training run (``train.py --use_visualdl``): an optional dependency.

Tags: per step ``train/loss``, ``train/acc1`` (the batch's top-1) and ``train/lr`` at the global
step (``epoch * steps_per_epoch + step``); per epoch ``epoch/train_loss``, ``epoch/train_acc1``,
``epoch/lr``, ``eval/acc1``, ``eval/acc5``, ``eval/loss`` at the epoch number (1-based). View them
with ``visualdl --logdir DIR``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

VISUALDL_MISSING = "--use_visualdl needs the visualdl package: pip install visualdl"

EPOCH_TAGS = {"train_loss": "epoch/train_loss", "train_acc1": "epoch/train_acc1", "lr": "epoch/lr",
              "acc1": "eval/acc1", "acc5": "eval/acc5", "val_loss": "eval/loss"}


class ScalarWriter(Protocol):
    def add_scalar(self, tag: str, value: float, step: int) -> None: ...

    def close(self) -> None: ...


def visualdl_available() -> bool:
    """True when ``visualdl.LogWriter`` imports (a broken install counts as missing)."""
    try:
        from visualdl import LogWriter  # noqa: F401
    except ImportError:
        return False
    return True


def open_writer(log_dir: Path) -> ScalarWriter:
    """A ``visualdl.LogWriter`` writing under ``log_dir`` (created)."""
    from visualdl import LogWriter

    log_dir.mkdir(parents=True, exist_ok=True)
    return LogWriter(logdir=str(log_dir))


def log_epoch(writer: ScalarWriter, epoch: int, stats: dict[str, float]) -> None:
    """The epoch's scalars (those of :data:`EPOCH_TAGS` present in ``stats``) at ``epoch`` (1-based)."""
    for key, tag in EPOCH_TAGS.items():
        if key in stats:
            writer.add_scalar(tag, float(stats[key]), epoch)
