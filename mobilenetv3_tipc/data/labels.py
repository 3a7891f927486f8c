"""Class-name lists: the shipped ImageNet-1k list, or a model's own ``label_list.txt``."""

from __future__ import annotations

from pathlib import Path

from mobilenetv3_tipc.export.layout import LABEL_LIST

IMAGENET_LABELS_FILE = Path(__file__).with_name("imagenet1k_labels.txt")


def read_label_file(path: str | Path) -> list[str]:
    """Read ``<index> <name>`` lines (index optional); line i names class i."""
    names: list[str] = []
    for line_no, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        head, _, rest = line.partition(" ")
        if head.isdigit():
            if int(head) != len(names):
                raise ValueError(f"{path}:{line_no}: expected class index {len(names)}, got {head}")
            line = rest.strip()
        names.append(line)
    return names


def write_label_file(path: str | Path, names: list[str]) -> None:
    Path(path).write_text("".join(f"{i} {name}\n" for i, name in enumerate(names)), encoding="utf-8")


def imagenet_labels() -> list[str]:
    return read_label_file(IMAGENET_LABELS_FILE)


def labels_for(num_classes: int, model_dir: str | Path | None = None) -> list[str] | None:
    """Names for ``num_classes`` outputs: ``model_dir/label_list.txt``, else ImageNet for 1000, else None."""
    if model_dir is not None:
        candidate = Path(model_dir) / LABEL_LIST
        if candidate.is_file():
            names = read_label_file(candidate)
            if len(names) == num_classes:
                return names
    if num_classes == 1000:
        return imagenet_labels()
    return None
