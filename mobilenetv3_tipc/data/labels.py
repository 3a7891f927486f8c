"""Class-name lists: the shipped ImageNet-1k list, or a model's own ``label_list.txt``."""

from __future__ import annotations

from pathlib import Path

from mobilenetv3_tipc.export.atomic import write_text_atomic
from mobilenetv3_tipc.export.layout import LABEL_LIST

IMAGENET_LABELS_FILE = Path(__file__).with_name("imagenet1k_labels.txt")


class LabelFileError(ValueError):
    """A label list that cannot be read; the message names the file (and line)."""


def read_label_file(path: str | Path) -> list[str]:
    """Read ``<index> <name>`` lines (index optional, UTF-8, a BOM is ignored); line i names class i."""
    names: list[str] = []
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        line_no = Path(path).read_bytes()[:exc.start].count(b"\n") + 1
        raise LabelFileError(f"{path}: not UTF-8 text (line {line_no}, byte 0x{exc.object[exc.start]:02x} at "
                             f"offset {exc.start}); save the label list as UTF-8") from exc
    for line_no, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        head, _, rest = line.partition(" ")
        if head.isdigit():
            if int(head) != len(names):
                raise LabelFileError(f"{path}:{line_no}: expected class index {len(names)}, got {head}")
            line = rest.strip()
        names.append(line)
    return names


def write_label_file(path: str | Path, names: list[str]) -> None:
    write_text_atomic(path, "".join(f"{i} {name}\n" for i, name in enumerate(names)))


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
