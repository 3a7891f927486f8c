"""What belongs together in an exported model folder, recorded in ``model_info.json`` and checked on load.

Every export (``tools/export_model.py``, quant-aware export, PTQ) records under ``"files"`` the
size and sha256 of each program and parameters file it wrote (``inference.json``,
``inference.pdmodel``, ``inference.pdiparams``), plus an ``"export_id"``. A predictor checks
the two files it is about to load against that record, so a program and weights from
different exports are refused by name (``inference.pdmodel does not belong to
inference.pdiparams: written by different exports``) instead of failing inside Paddle. A
folder whose ``model_info.json`` has no ``"files"`` (older exports) is not checked.
Standard library only (hashing a 17 MB parameters file takes ~30 ms).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from mobilenetv3_tipc.export import layout
from mobilenetv3_tipc.export.atomic import digest_mismatch, file_digest, write_text_atomic

FILES_KEY = "files"
RECORDED = (layout.PIR_PROGRAM, layout.LEGACY_PROGRAM, layout.PARAMS)


class ModelFilesMismatch(ValueError):
    """The program and parameters of a model folder come from different exports (or were changed)."""


def read_model_info(model_dir: str | Path) -> dict:
    """``model_info.json`` of ``model_dir`` ({} when absent); unreadable JSON names the file."""
    path = Path(model_dir) / layout.MODEL_INFO
    if not path.is_file():
        return {}
    try:
        info = json.loads(path.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ModelFilesMismatch(f"{path}: not valid UTF-8 JSON ({exc})") from exc
    if not isinstance(info, dict):
        raise ModelFilesMismatch(f"{path}: expected a JSON object")
    return info


def record_model_files(model_dir: str | Path, info: dict | None = None) -> dict:
    """Write ``model_info.json`` = ``info`` (default: the folder's own) + the digests of its files."""
    root = Path(model_dir)
    record = dict(read_model_info(root) if info is None else info)
    record[FILES_KEY] = {name: file_digest(root / name) for name in RECORDED if (root / name).is_file()}
    record["export_id"] = uuid.uuid4().hex
    write_text_atomic(root / layout.MODEL_INFO, json.dumps(record, indent=2) + "\n")
    return record


def check_model_files(model_dir: str | Path, program: str, params: str = layout.PARAMS) -> None:
    """Raise :class:`ModelFilesMismatch` unless ``program`` and ``params`` are the files the export recorded."""
    root = Path(model_dir)
    recorded = read_model_info(root).get(FILES_KEY)
    if not recorded:
        return
    where = root / layout.MODEL_INFO

    def problem(name: str) -> str | None:
        if name not in recorded:
            return f"{name} is not part of the export {where} describes"
        return digest_mismatch(root / name, recorded[name])

    bad_program, bad_params = problem(program), problem(params)
    if bad_program and bad_params:
        raise ModelFilesMismatch(f"{root}: {program} and {params} are not the files of the export {where} "
                                 f"describes ({bad_program}; {bad_params}): written by different exports; "
                                 "export the model again")
    if bad_program or bad_params:
        wrong, other = (program, params) if bad_program else (params, program)
        raise ModelFilesMismatch(f"{root}: {wrong} does not belong to {other}: written by different exports "
                                 f"({bad_program or bad_params}); export the model again")
