"""Plot the per-epoch metrics that train.py appends to ``OUTPUT_DIR/metrics.jsonl``.

    python tools/plot_log.py --log ./output/metrics.jsonl --out ./output/training_curves.png
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from mobilenetv3_tipc.cli import EXIT_OK, run_main

logger = logging.getLogger("plot_log")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log", required=True, help="metrics.jsonl written by train.py")
    parser.add_argument("--out", default=None, help="PNG to write (default: next to the log)")
    return parser


def read_records(path: Path) -> list[dict[str, float]]:
    records = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{line_no}: not a JSON line ({exc.msg})") from exc
    if not records:
        raise ValueError(f"{path}: no epochs recorded")
    return records


def plot(records: list[dict[str, float]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in records]
    fig, (ax_loss, ax_acc, ax_lr) = plt.subplots(1, 3, figsize=(14, 4))
    ax_loss.plot(epochs, [r["train_loss"] for r in records], marker="o", label="train")
    ax_loss.plot(epochs, [r["val_loss"] for r in records], marker="o", label="val")
    ax_loss.set(title="loss", xlabel="epoch")
    ax_loss.legend()
    ax_acc.plot(epochs, [r["train_acc1"] for r in records], marker="o", label="train top-1")
    ax_acc.plot(epochs, [r["acc1"] for r in records], marker="o", label="val top-1")
    ax_acc.plot(epochs, [r["acc5"] for r in records], marker="o", label="val top-5")
    ax_acc.set(title="accuracy", xlabel="epoch", ylim=(0, 1))
    ax_acc.legend()
    ax_lr.plot(epochs, [r["lr"] for r in records], marker="o")
    ax_lr.set(title="learning rate", xlabel="epoch")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def run(argv: list[str] | None) -> int:
    args = get_args_parser().parse_args(argv)
    log = Path(args.log)
    out = Path(args.out) if args.out else log.with_name("training_curves.png")
    plot(read_records(log), out)
    logger.info("wrote %s", out)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    return run_main(run, argv)


if __name__ == "__main__":
    sys.exit(main())
